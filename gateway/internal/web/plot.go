package web

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"
)

// The plots are SVG drawn on the server, pure functions of their inputs and now, locked by
// the golden files testdata/*.svg (go test -run TestPlots -update). Colours come from CSS
// classes (style.css), so the page's light and dark themes apply; every mark carries a
// <title> that screen readers and a hovering pointer read, and every plot a role="img" with
// an aria-label saying what it shows.

// svgText escapes s for SVG text and attribute values.
func svgText(s string) string { return template.HTMLEscapeString(s) }

// f1 formats a coordinate with at most one decimal, so that golden files are stable.
func f1(x float64) string {
	s := fmt.Sprintf("%.1f", x)
	return strings.TrimSuffix(s, ".0")
}

// Severity classes of a mark, shared with the tables' badges.
const (
	sevOK   = "ok"
	sevWarn = "warn"
	sevBad  = "bad"
	sevNone = "none"
)

// TimelineHorizon is how far the expiry timeline looks ahead.
const TimelineHorizon = 90 * 24 * time.Hour

// timelineMark is one device on the expiry timeline.
type timelineMark struct {
	ID       string
	Label    string // what the mark's title says besides the id
	Group    string // its lane: the family or class
	NotAfter time.Time
	// WindowStart..WindowEnd is its renewal window, shaded behind the mark; zero when unknown.
	WindowStart, WindowEnd time.Time
	Severity               string // sevOK, sevWarn, sevBad or sevNone
}

// Timeline geometry: a label column, an "expired" column, the 90 days, a "later" column.
const (
	tlLabel   = 120.0
	tlPast    = 44.0
	tlDays    = 900.0 // 10 px a day
	tlLater   = 44.0
	tlWidth   = tlLabel + tlPast + tlDays + tlLater
	tlAxis    = 22.0 // the axis labels above the lanes
	tlSubRows = 4    // marks of one lane alternate between this many rows
	tlRow     = 7.0
	tlLaneGap = 10.0
)

// timelineSVG draws the expiry timeline: one lane per group (in the order of groups), one
// mark per device at its certificate's expiry, expired ones in a column before today's line,
// those beyond the horizon in a "later" column, devices without a certificate in a "none"
// column at the far left of the lane; renewal windows are shaded behind the marks.
func timelineSVG(groups []string, marks []timelineMark, now time.Time) template.HTML {
	lane := map[string]int{}
	for i, g := range groups {
		lane[g] = i
	}
	laneH := tlSubRows*tlRow + tlLaneGap
	height := tlAxis + float64(max(1, len(groups)))*laneH + 4
	x0 := tlLabel + tlPast // today
	xOf := func(t time.Time) float64 {
		d := t.Sub(now)
		switch {
		case d < 0:
			return tlLabel + tlPast/2
		case d > TimelineHorizon:
			return x0 + tlDays + tlLater/2
		}
		return x0 + tlDays*float64(d)/float64(TimelineHorizon)
	}
	clip := func(t time.Time) float64 {
		d := max(0, min(t.Sub(now), TimelineHorizon))
		return x0 + tlDays*float64(d)/float64(TimelineHorizon)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="plot timeline" viewBox="0 0 %[1]s %[2]s" width="%[1]s" role="img" aria-label="Certificate expiry over the next 90 days, %[3]d devices in %[4]d groups">`,
		f1(tlWidth), f1(height), len(marks), len(groups))
	// Axis: expired, today, every 15 days, later.
	fmt.Fprintf(&b, `<text class="axis" x="%s" y="12" text-anchor="end">expired</text>`, f1(x0-4))
	for d := 0; d <= 90; d += 15 {
		x := x0 + tlDays*float64(d)/90
		switch d {
		case 0:
			fmt.Fprintf(&b, `<text class="axis" x="%s" y="12">today</text>`, f1(x+4))
		case 90:
			fmt.Fprintf(&b, `<text class="axis" x="%s" y="12" text-anchor="end">+90 d</text>`, f1(x-3))
		default:
			fmt.Fprintf(&b, `<text class="axis" x="%s" y="12" text-anchor="middle">+%d d</text>`, f1(x), d)
		}
		fmt.Fprintf(&b, `<line class="grid" x1="%s" y1="%s" x2="%s" y2="%s"/>`, f1(x), f1(tlAxis-6), f1(x), f1(height))
	}
	fmt.Fprintf(&b, `<text class="axis" x="%s" y="12">later</text>`, f1(x0+tlDays+3))
	for i, g := range groups {
		y := tlAxis + float64(i)*laneH
		fmt.Fprintf(&b, `<rect class="lane" x="0" y="%s" width="%s" height="%s"/>`, f1(y), f1(tlWidth), f1(laneH-tlLaneGap/2))
		name := g
		if name == "" {
			name = "(none)"
		}
		if len(name) > 18 {
			name = name[:17] + "…"
		}
		fmt.Fprintf(&b, `<text class="lane-label" x="4" y="%s">%s</text>`, f1(y+laneH/2), svgText(name))
	}
	fmt.Fprintf(&b, `<line class="today" x1="%s" y1="%s" x2="%s" y2="%s"><title>today, %s</title></line>`,
		f1(x0), f1(tlAxis-6), f1(x0), f1(height), formatDate(now))
	count := map[string]int{}
	for _, m := range marks {
		i := lane[m.Group]
		k := count[m.Group]
		count[m.Group]++
		y := tlAxis + float64(i)*laneH + float64(k%tlSubRows)*tlRow + tlRow/2
		when := "no certificate"
		if !m.NotAfter.IsZero() {
			when = "expires " + formatDate(m.NotAfter) + ", " + timeLeft(now, m.NotAfter)
		}
		title := m.ID
		if m.Label != "" {
			title += " (" + m.Label + ")"
		}
		title += ": " + when
		fmt.Fprintf(&b, `<g class="mark %s"><title>%s</title>`, m.Severity, svgText(title))
		if !m.WindowStart.IsZero() && m.WindowEnd.After(now) && m.WindowStart.Before(now.Add(TimelineHorizon)) {
			ws, we := clip(m.WindowStart), clip(m.WindowEnd)
			fmt.Fprintf(&b, `<rect class="window" x="%s" y="%s" width="%s" height="%s"/>`, f1(ws), f1(y-2.5), f1(max(1, we-ws)), "5")
			if x := xOf(m.NotAfter); x > we {
				fmt.Fprintf(&b, `<line class="life" x1="%s" y1="%s" x2="%s" y2="%s"/>`, f1(we), f1(y), f1(x), f1(y))
			}
		}
		switch {
		case m.NotAfter.IsZero():
			fmt.Fprintf(&b, `<rect class="dot" x="%s" y="%s" width="5" height="5"/>`, f1(tlLabel+4), f1(y-2.5))
		default:
			fmt.Fprintf(&b, `<circle class="dot" cx="%s" cy="%s" r="2.8"/>`, f1(xOf(m.NotAfter)), f1(y))
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// rateBucket is one bar of a success-rate plot.
type rateBucket struct {
	Label     string // its period, for the title
	Successes int
	Failures  int
}

// rateSVG draws one bar per bucket, its height the share of successful attempts and its
// colour the rate's severity; a bucket without attempts is a grey tick. The title of each
// bar gives the counts.
func rateSVG(name string, buckets []rateBucket) template.HTML {
	const w, h, top, bottom = 240.0, 90.0, 6.0, 16.0
	n := max(1, len(buckets))
	bw := w / float64(n)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="plot rate" viewBox="0 0 %[1]s %[2]s" width="%[1]s" role="img" aria-label="Renewal success rate, %[3]s, %[4]d bars">`,
		f1(w), f1(h), svgText(name), len(buckets))
	fmt.Fprintf(&b, `<line class="grid" x1="0" y1="%s" x2="%s" y2="%s"/>`, f1(top), f1(w), f1(top))
	fmt.Fprintf(&b, `<line class="axis-line" x1="0" y1="%s" x2="%s" y2="%s"/>`, f1(h-bottom), f1(w), f1(h-bottom))
	plotH := h - top - bottom
	for i, k := range buckets {
		x := float64(i)*bw + bw*0.12
		total := k.Successes + k.Failures
		if total == 0 {
			fmt.Fprintf(&b, `<rect class="bar none" x="%s" y="%s" width="%s" height="2"><title>%s: no attempts</title></rect>`,
				f1(x), f1(h-bottom-2), f1(bw*0.76), svgText(k.Label))
			continue
		}
		r := float64(k.Successes) / float64(total)
		sev := sevOK
		switch {
		case r < 0.8:
			sev = sevBad
		case r < 0.99:
			sev = sevWarn
		}
		bh := math.Max(2, plotH*r)
		fmt.Fprintf(&b, `<rect class="bar %s" x="%s" y="%s" width="%s" height="%s"><title>%s: %.0f %% (%d ok, %d failed)</title></rect>`,
			sev, f1(x), f1(h-bottom-bh), f1(bw*0.76), f1(bh), svgText(k.Label), 100*r, k.Successes, k.Failures)
	}
	if len(buckets) > 0 {
		fmt.Fprintf(&b, `<text class="axis" x="0" y="%s">%s</text>`, f1(h-3), svgText(buckets[0].Label))
		fmt.Fprintf(&b, `<text class="axis" x="%s" y="%s" text-anchor="end">%s</text>`, f1(w), f1(h-3), svgText(buckets[len(buckets)-1].Label))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// bar is one row of a horizontal bar chart.
type bar struct {
	Label    string
	N        int
	Of       int    // the whole the bar is a share of; 0 draws N against the largest N
	Severity string // the bar's class
	Value    string // shown at the bar's end instead of the count or share; "" for those
}

// barsSVG draws a horizontal bar chart with the count (or the share of Of) at the end of
// each bar.
func barsSVG(name string, bars []bar) template.HTML {
	const w, labelW, rowH = 420.0, 150.0, 20.0
	h := max(1, float64(len(bars))) * rowH
	largest := 1
	for _, r := range bars {
		largest = max(largest, r.N)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="plot bars" viewBox="0 0 %[1]s %[2]s" width="%[1]s" role="img" aria-label="%[3]s, %[4]d bars">`, f1(w), f1(h), svgText(name), len(bars))
	for i, r := range bars {
		y := float64(i) * rowH
		frac := float64(r.N) / float64(largest)
		value := fmt.Sprint(r.N)
		if r.Of > 0 {
			frac = float64(r.N) / float64(r.Of)
			value = fmt.Sprintf("%.0f %% (%d of %d)", 100*frac, r.N, r.Of)
		}
		if r.Value != "" {
			value = r.Value
		}
		bw := (w - labelW - 90) * frac
		label := r.Label
		if len(label) > 24 {
			label = label[:23] + "…"
		}
		fmt.Fprintf(&b, `<text class="bar-label" x="%s" y="%s" text-anchor="end">%s</text>`, f1(labelW-6), f1(y+14), svgText(label))
		fmt.Fprintf(&b, `<rect class="bar %s" x="%s" y="%s" width="%s" height="%s"><title>%s: %s</title></rect>`,
			r.Severity, f1(labelW), f1(y+4), f1(math.Max(1, bw)), f1(rowH-8), svgText(r.Label), value)
		fmt.Fprintf(&b, `<text class="bar-value" x="%s" y="%s">%s</text>`, f1(labelW+math.Max(1, bw)+4), f1(y+14), value)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// lifetimeBuckets are the classes of certificate lifetime the distribution counts.
var lifetimeBuckets = []struct {
	Label string
	Upto  time.Duration
}{
	{"≤ 1 day", 24 * time.Hour}, {"≤ 7 days", 7 * 24 * time.Hour}, {"≤ 30 days", 30 * 24 * time.Hour},
	{"≤ 90 days", 90 * 24 * time.Hour}, {"≤ 1 year", 366 * 24 * time.Hour}, {"longer", math.MaxInt64},
}

// lifetimeBucket returns the index in lifetimeBuckets of a certificate lifetime.
func lifetimeBucket(d time.Duration) int {
	for i, b := range lifetimeBuckets {
		if d <= b.Upto {
			return i
		}
	}
	return len(lifetimeBuckets) - 1
}

// population is one group's count of active certificates in each of lifetimeBuckets.
type population struct {
	Name   string
	Counts [6]int
}

// lifetimeSVG draws one stacked bar per population: the share of its active certificates in
// each lifetime class, with a legend.
func lifetimeSVG(pops []population) template.HTML {
	const w, labelW, rowH, legendH = 420.0, 110.0, 22.0, 22.0
	h := legendH + max(1, float64(len(pops)))*rowH
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="plot lifetimes" viewBox="0 0 %[1]s %[2]s" width="%[1]s" role="img" aria-label="Certificate lifetimes, %[3]d populations">`, f1(w), f1(h), len(pops))
	for i, l := range lifetimeBuckets {
		x := float64(i) * (w / float64(len(lifetimeBuckets)))
		fmt.Fprintf(&b, `<rect class="life l%d" x="%s" y="4" width="10" height="10"/><text class="axis" x="%s" y="13">%s</text>`,
			i, f1(x), f1(x+13), svgText(l.Label))
	}
	for i, p := range pops {
		y := legendH + float64(i)*rowH
		total := 0
		for _, n := range p.Counts {
			total += n
		}
		fmt.Fprintf(&b, `<text class="bar-label" x="%s" y="%s" text-anchor="end">%s</text>`, f1(labelW-6), f1(y+15), svgText(p.Name))
		x := labelW
		span := w - labelW - 40
		for k, n := range p.Counts {
			if n == 0 {
				continue
			}
			bw := span * float64(n) / float64(total)
			fmt.Fprintf(&b, `<rect class="life l%d" x="%s" y="%s" width="%s" height="%s"><title>%s, %s: %d of %d</title></rect>`,
				k, f1(x), f1(y+4), f1(bw), f1(rowH-8), svgText(p.Name), svgText(lifetimeBuckets[k].Label), n, total)
			x += bw
		}
		fmt.Fprintf(&b, `<text class="bar-value" x="%s" y="%s">%d</text>`, f1(w-36), f1(y+15), total)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// historyCert is one certificate on a device's history plot.
type historyCert struct {
	Serial      string
	Status      string
	NotBefore   time.Time
	NotAfter    time.Time
	ActivatedAt time.Time // the renewal point: when the device proved it; zero if never
}

// historySVG draws a device's certificates as validity bars, newest on top, each coloured by
// its status, with a diamond where it became active and today's line.
func historySVG(certs []historyCert, now time.Time) template.HTML {
	const w, labelW, rowH, axisH = 900.0, 110.0, 18.0, 18.0
	h := axisH + max(1, float64(len(certs)))*rowH
	lo, hi := now, now
	for _, c := range certs {
		if !c.NotBefore.IsZero() && c.NotBefore.Before(lo) {
			lo = c.NotBefore
		}
		if c.NotAfter.After(hi) {
			hi = c.NotAfter
		}
	}
	span := hi.Sub(lo)
	if span <= 0 {
		span = time.Hour
	}
	xOf := func(t time.Time) float64 {
		return labelW + (w-labelW-8)*float64(t.Sub(lo))/float64(span)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="plot history" viewBox="0 0 %[1]s %[2]s" width="%[1]s" role="img" aria-label="Certificate history, %[3]d certificates">`, f1(w), f1(h), len(certs))
	fmt.Fprintf(&b, `<text class="axis" x="%s" y="12">%s</text>`, f1(labelW), lo.UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, `<text class="axis" x="%s" y="12" text-anchor="end">%s</text>`, f1(w-8), hi.UTC().Format("2006-01-02"))
	for i, c := range certs {
		y := axisH + float64(i)*rowH
		x1, x2 := xOf(c.NotBefore), xOf(c.NotAfter)
		fmt.Fprintf(&b, `<text class="bar-label mono" x="%s" y="%s" text-anchor="end">%s</text>`, f1(labelW-6), f1(y+12), svgText(short(c.Serial)))
		fmt.Fprintf(&b, `<rect class="cert status-%s" x="%s" y="%s" width="%s" height="%s"><title>%s, %s: %s → %s</title></rect>`,
			svgText(c.Status), f1(x1), f1(y+3), f1(math.Max(1, x2-x1)), f1(rowH-6), svgText(c.Serial), svgText(c.Status),
			formatDate(c.NotBefore), formatDate(c.NotAfter))
		if !c.ActivatedAt.IsZero() {
			x := xOf(c.ActivatedAt)
			fmt.Fprintf(&b, `<path class="renewed" d="M%s %sl4 5-4 5-4-5z"><title>active since %s</title></path>`,
				f1(x), f1(y+4), formatDate(c.ActivatedAt))
		}
	}
	x := xOf(now)
	fmt.Fprintf(&b, `<line class="today" x1="%s" y1="%s" x2="%s" y2="%s"><title>today, %s</title></line>`, f1(x), f1(axisH-4), f1(x), f1(h), formatDate(now))
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
