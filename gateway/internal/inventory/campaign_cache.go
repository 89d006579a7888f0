package inventory

import "sync"

// campaignCache keeps the entries of the campaigns CampaignsInProgress returned, so that a
// renewal pass reads only the campaign rows and not every entry of a running campaign again
// (issue 11: 10,000 entries read through gorm at each pass). It is write-through: the
// Store's writes of entries (CreateCampaign, SetCampaignStages, RecordCommands) change the
// cached copy once their transaction committed, and a write that failed drops the
// campaign, which the next CampaignsInProgress reads again. The hub is the only writer of
// its inventory (the CLI goes through its control socket), so the cache cannot go stale
// behind its back.
//
// A read that raced a write is not cached: gen counts the writes, and entries loaded while
// it moved are returned but not kept.
type campaignCache struct {
	mu      sync.Mutex
	gen     uint64
	entries map[string]*cachedCampaign // by campaign id
}

// cachedCampaign is the entries of one campaign in their order, and where each device is.
type cachedCampaign struct {
	devices []CampaignDevice
	at      map[string]int // device id → index in devices
}

// newCachedCampaign caches a copy of devices, as they read back from the database.
func newCachedCampaign(devices []CampaignDevice) *cachedCampaign {
	c := &cachedCampaign{devices: make([]CampaignDevice, len(devices)), at: make(map[string]int, len(devices))}
	for i, d := range devices {
		d.CampaignStage = d.stored()
		c.devices[i], c.at[d.DeviceID] = d, i
	}
	return c
}

// stored is st as it reads back from the database: times to the second, in UTC.
func (st CampaignStage) stored() CampaignStage {
	st.CommandedAt = fromUnix(unix(st.CommandedAt))
	return st
}

// lookup returns copies of the cached entries of the campaigns ids (nil for those not
// cached), and the write generation to pass to keep.
func (c *campaignCache) lookup(ids []string) ([][]CampaignDevice, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([][]CampaignDevice, len(ids))
	for i, id := range ids {
		if e := c.entries[id]; e != nil {
			out[i] = append(make([]CampaignDevice, 0, len(e.devices)), e.devices...)
		}
	}
	return out, c.gen
}

// keep caches the entries loaded of the campaigns and forgets the cached campaigns not in
// inProgress (ended, nothing in flight: no pass reads them again), unless a write happened
// since gen.
func (c *campaignCache) keep(gen uint64, inProgress []string, loaded map[string][]CampaignDevice) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	live := make(map[string]*cachedCampaign, len(inProgress))
	for _, id := range inProgress {
		if devs, ok := loaded[id]; ok {
			live[id] = newCachedCampaign(devs)
		} else if e := c.entries[id]; e != nil {
			live[id] = e
		}
	}
	c.entries = live
}

// created caches a campaign just stored with its entries.
func (c *campaignCache) created(id string, devices []CampaignDevice) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if c.entries == nil {
		c.entries = map[string]*cachedCampaign{}
	}
	c.entries[id] = newCachedCampaign(devices)
}

// staged applies stages (device id → stage) stored for campaign id. An entry the cache
// does not hold drops the campaign: the next read loads it whole.
func (c *campaignCache) staged(id string, stages map[string]CampaignStage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	e := c.entries[id]
	if e == nil {
		return
	}
	for dev, st := range stages {
		i, ok := e.at[dev]
		if !ok {
			delete(c.entries, id)
			return
		}
		e.devices[i].CampaignStage = st.stored()
	}
}

// drop forgets campaign id after a write whose outcome is unknown.
func (c *campaignCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.entries, id)
}
