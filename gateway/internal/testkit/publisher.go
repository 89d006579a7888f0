package testkit

import (
	"slices"
	"sync"
	"time"
)

// Message is one call of Publisher.Publish.
type Message struct {
	Topic   string
	Payload []byte
	Retain  bool
}

// Publisher is a fake of the hub's broker as the hub's parts see it (admin.Broker,
// issuer.Publisher): it records what they publish and which devices they disconnect. Its
// zero value is ready; it is safe for concurrent use.
type Publisher struct {
	// Fail, when set, is asked before each Publish; a non-nil error is returned to the caller
	// and the message is not recorded.
	Fail func(topic string) error

	mu           sync.Mutex
	msgs         []Message
	disconnected []string
}

// Publish records a message, unless Fail refuses it.
func (p *Publisher) Publish(topic string, payload []byte, retain bool) error {
	if p.Fail != nil {
		if err := p.Fail(topic); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, Message{Topic: topic, Payload: slices.Clone(payload), Retain: retain})
	return nil
}

// Disconnect records the device and reports that no session was open.
func (p *Publisher) Disconnect(deviceID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.disconnected = append(p.disconnected, deviceID)
	return 0
}

// DisconnectAfter is Disconnect: the grace passes at once.
func (p *Publisher) DisconnectAfter(deviceID string, _ time.Duration) int {
	return p.Disconnect(deviceID)
}

// Messages returns every message published so far, in order.
func (p *Publisher) Messages() []Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.msgs)
}

// Topics returns the topic of every message published so far, in order.
func (p *Publisher) Topics() []string {
	var out []string
	for _, m := range p.Messages() {
		out = append(out, m.Topic)
	}
	return out
}

// Last returns the last message published on topic.
func (p *Publisher) Last(topic string) (Message, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.msgs) - 1; i >= 0; i-- {
		if p.msgs[i].Topic == topic {
			return p.msgs[i], true
		}
	}
	return Message{}, false
}

// Disconnected returns the devices Disconnect was called for, in order.
func (p *Publisher) Disconnected() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.disconnected)
}
