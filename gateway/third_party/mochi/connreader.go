package mqtt

import (
	"net"
	"sync"
)

// connReader reads a client's packets from its connection (ClientConnection.bconn).
//
// hearth: it replaces a bufio.Reader of ClientNetReadBufferSize held for the client's whole
// life, most of which an idle client spends parked in its next read. Between packets it
// holds no buffer: ReadFixedHeader reads a packet's first byte with First, into the reader's
// own byte; a buffer of size bytes is taken from buffers for the rest of the packet (and
// whatever follows it in the same read) and given back as soon as it is drained. A Read of
// more bytes than are buffered reads straight into the caller's slice once the buffer is
// drained, as bufio does. Only the client's read goroutine uses it.
type connReader struct {
	conn    net.Conn
	size    int
	buffers *sync.Pool // of *[]byte of size bytes; nil: a new buffer each time
	buf     *[]byte    // nil while nothing is buffered
	r, w    int        // the unread bytes are (*buf)[r:w]
	one     [1]byte    // First's byte
}

// newConnReader reads from conn with buffers of size bytes (at least 16) from buffers.
func newConnReader(conn net.Conn, size int, buffers *sync.Pool) *connReader {
	return &connReader{conn: conn, size: max(size, 16), buffers: buffers}
}

// First returns the first byte of a packet. With nothing buffered it reads that byte
// without a buffer: it is where an idle client waits.
func (c *connReader) First() (byte, error) {
	if c.r < c.w {
		return c.ReadByte()
	}
	for {
		n, err := c.conn.Read(c.one[:])
		if n > 0 {
			return c.one[0], nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// ReadByte returns the next byte, filling a buffer if none is buffered.
func (c *connReader) ReadByte() (byte, error) {
	if c.r == c.w {
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	b := (*c.buf)[c.r]
	c.r++
	c.drained()
	return b, nil
}

// Read reads up to len(p) bytes: the buffered ones, else straight from the connection.
func (c *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.r == c.w {
		return c.conn.Read(p)
	}
	n := copy(p, (*c.buf)[c.r:c.w])
	c.r += n
	c.drained()
	return n, nil
}

// fill reads at least one byte into a buffer taken for it.
func (c *connReader) fill() error {
	if c.buf == nil {
		if c.buffers != nil {
			c.buf, _ = c.buffers.Get().(*[]byte)
		}
		if c.buf == nil || len(*c.buf) != c.size {
			b := make([]byte, c.size)
			c.buf = &b
		}
	}
	c.r, c.w = 0, 0
	for c.w == 0 {
		n, err := c.conn.Read(*c.buf)
		c.w = n
		if n == 0 && err != nil {
			c.drained()
			return err
		}
	}
	return nil
}

// drained gives the buffer back once every byte in it was read.
func (c *connReader) drained() {
	if c.r < c.w || c.buf == nil {
		return
	}
	if c.buffers != nil {
		c.buffers.Put(c.buf)
	}
	c.buf, c.r, c.w = nil, 0, 0
}

// Buffered returns the number of bytes read from the connection and not yet returned.
func (c *connReader) Buffered() int { return c.w - c.r }
