package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/hearth-pki/hearth/protocol"
)

// campaignOptions are the flags of `renew` that start a campaign.
type campaignOptions struct {
	family, class, rate, abortAfter, id *string
	all, rekey                          *bool
	canary                              *int
}

// campaignFlags defines the campaign flags on fs; family is the --family flag the command
// already has (token create uses it too).
func campaignFlags(fs *flag.FlagSet, family *string) *campaignOptions {
	return &campaignOptions{
		family:     family,
		class:      fs.String("class", "", "campaign: every device of this policy `class`"),
		all:        fs.Bool("all", false, "campaign: every device"),
		rate:       fs.String("rate", "", "campaign pace, e.g. 100/min or 2/s"),
		canary:     fs.Int("canary", 0, "campaign: renew this many devices first"),
		abortAfter: fs.String("abort-after", "", "campaign: stop when this share failed, e.g. 10%"),
		rekey:      fs.Bool("rekey", false, "campaign: require a new key (incident)"),
		id:         fs.String("campaign-id", "", "campaign name (default generated)"),
	}
}

func (o *campaignOptions) selected() bool { return *o.family != "" || *o.class != "" || *o.all }

// campaign builds the campaign the flags describe.
func (o *campaignOptions) campaign() (protocol.Campaign, error) {
	c := protocol.Campaign{ID: *o.id, Selector: protocol.CampaignSelector{Family: *o.family, Class: *o.class, All: *o.all},
		Canary: *o.canary, Action: protocol.ActionRenew}
	if *o.rekey {
		c.Action = protocol.ActionRekey
	}
	if c.ID == "" {
		b := make([]byte, 3)
		rand.Read(b)
		c.ID = "campaign-" + hex.EncodeToString(b)
	}
	var err error
	if c.Rate, err = parseRate(*o.rate); err != nil {
		return c, err
	}
	if c.AbortAfter, err = parseShare(*o.abortAfter); err != nil {
		return c, err
	}
	return c, nil
}

// parseRate reads "100/min", "2/s" or "120/h" as commands per minute; "" is no limit.
func parseRate(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	n, unit, ok := strings.Cut(s, "/")
	v, err := strconv.ParseFloat(n, 64)
	per := map[string]float64{"s": 60, "sec": 60, "min": 1, "m": 1, "h": 1.0 / 60, "hour": 1.0 / 60}[unit]
	if !ok || err != nil || v <= 0 || per == 0 {
		return 0, fmt.Errorf("--rate %q: want a count per s, min or h, e.g. 100/min", s)
	}
	return v * per, nil
}

// parseShare reads "10%" or "0.1" as a fraction; "" is never.
func parseShare(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	pct := strings.HasSuffix(s, "%")
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if pct {
		v /= 100
	}
	if err != nil || v <= 0 || v > 1 {
		return 0, fmt.Errorf("--abort-after %q: want a share such as 10%% or 0.1", s)
	}
	return v, nil
}
