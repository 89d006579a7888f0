package metrics

import (
	"bytes"
	"net/http"
	"strconv"

	"github.com/prometheus/common/expfmt"
)

// deviceLine is the expected size of one per-device line, to size the scrape's buffer.
const deviceLine = 120

// serveText answers a scrape in the text format f: the registry's families encoded by
// client_golang, then the per-device families written by writeDevices.
func (m *Metrics) serveText(w http.ResponseWriter, f expfmt.Format) {
	fams, gerr := m.reg.Gather()
	m.mu.RLock()
	buf := bytes.NewBuffer(make([]byte, 0, 64<<10+len(m.devices)*5*deviceLine))
	m.mu.RUnlock()
	enc := expfmt.NewEncoder(buf, f)
	for _, fam := range fams {
		if err := enc.Encode(fam); err != nil {
			http.Error(w, "encode metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
	}
	m.writeDevices(buf)
	if gerr != nil && len(fams) == 0 {
		http.Error(w, "gather metrics: "+gerr.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", string(f))
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.Write(buf.Bytes())
}

// writeDevices appends the per-device families to buf in the text exposition format (the
// same series as deviceCollector), without building a client_golang metric per series: one
// pass over the device states, under the read lock, appending bytes.
func (m *Metrics) writeDevices(buf *bytes.Buffer) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if len(m.devices) == 0 {
		return
	}
	b := buf.AvailableBuffer()
	var any bool
	for _, d := range m.devices {
		if !d.expires.IsZero() {
			any = true
			break
		}
	}
	if any {
		b = header(b, NameCertExpiration, helpExpiry)
		for id, d := range m.devices {
			if !d.expires.IsZero() {
				b = deviceSample(b, NameCertExpiration, id, d, "", float64(d.expires.Unix()))
			}
		}
	}
	any = false
	for _, d := range m.devices {
		if !d.renewal.IsZero() {
			any = true
			break
		}
	}
	if any {
		b = header(b, NameCertRenewal, helpRenewal)
		for id, d := range m.devices {
			if !d.renewal.IsZero() {
				b = deviceSample(b, NameCertRenewal, id, d, "", float64(d.renewal.Unix()))
			}
		}
	}
	b = header(b, NameCertReady, helpReady)
	for id, d := range m.devices {
		for _, cond := range conditions {
			v := 0.0
			if cond == d.condition {
				v = 1
			}
			b = deviceSample(b, NameCertReady, id, d, cond, v)
		}
	}
	buf.Write(b)
}

// header appends the HELP and TYPE lines of a gauge family.
func header(b []byte, name, help string) []byte {
	b = append(b, "# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, help...)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	return append(b, " gauge\n"...)
}

// deviceSample appends one series of a per-device family: its labels in client_golang's
// order (sorted by name) and its value as the text format writes it.
func deviceSample(b []byte, name, id string, d deviceState, cond string, v float64) []byte {
	b = append(b, name...)
	b = append(b, `{class="`...)
	b = escape(b, d.class)
	if cond != "" {
		b = append(b, `",condition="`...)
		b = escape(b, cond)
	}
	b = append(b, `",device="`...)
	b = escape(b, id)
	b = append(b, `",family="`...)
	b = escape(b, d.family)
	b = append(b, `"} `...)
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	return append(b, '\n')
}

// escape appends a label value escaped as the text format requires: backslash, double
// quote and line feed.
func escape(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, c)
		}
	}
	return b
}
