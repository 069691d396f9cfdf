package nbd

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Client is a small NBD client: fixed newstyle, NBD_OPT_GO, optional
// structured replies, pipelined requests. The demo's and the benchmarks'
// workloads write through it; real hypervisors use their own clients.
// ReadAt, WriteAt and Flush wait for their reply and must not run while
// requests are pipelined.
type Client struct {
	nc         net.Conn
	r          *bufio.Reader
	size       int64
	flags      uint16
	structured bool

	wmu    sync.Mutex
	cookie uint64

	closeOnce sync.Once
	closeErr  error
}

// replyMsg is one decoded reply.
type replyMsg struct {
	cookie uint64
	errno  uint32
	data   []byte
}

// Dial connects to export on a server at addr ("unix" socket path or
// "tcp" host:port) and negotiates simple replies.
func Dial(network, addr, export string) (*Client, error) {
	return dial(network, addr, export, false)
}

func dial(network, addr, export string, structured bool) (*Client, error) {
	nc, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &Client{nc: nc, r: bufio.NewReaderSize(nc, 1<<20)}
	if err := c.negotiate(export, structured); err != nil {
		return nil, errors.Join(err, nc.Close())
	}
	return c, nil
}

func (c *Client) negotiate(export string, structured bool) error {
	var greet [18]byte
	if _, err := io.ReadFull(c.r, greet[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint64(greet[:]) != nbdMagic || binary.BigEndian.Uint64(greet[8:]) != nbdOptMagic {
		return errors.New("bad greeting")
	}
	if _, err := c.nc.Write(binary.BigEndian.AppendUint32(nil, nbdFlagFixedNewstyle|nbdFlagNoZeroes)); err != nil {
		return err
	}
	if structured {
		if err := c.sendOpt(nbdOptStructuredReply, nil); err != nil {
			return err
		}
		if typ, _, err := c.readOptReply(); err != nil || typ != nbdRepAck {
			return fmt.Errorf("structured reply refused: %#x %v", typ, err)
		}
		c.structured = true
	}
	data := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	data = append(data, export...)
	data = binary.BigEndian.AppendUint16(data, 1)
	data = binary.BigEndian.AppendUint16(data, nbdInfoBlockSize)
	if err := c.sendOpt(nbdOptGo, data); err != nil {
		return err
	}
	for {
		typ, payload, err := c.readOptReply()
		if err != nil {
			return err
		}
		switch {
		case typ == nbdRepAck:
			return nil
		case typ == nbdRepInfo && binary.BigEndian.Uint16(payload) == nbdInfoExport:
			c.size = int64(binary.BigEndian.Uint64(payload[2:]))
			c.flags = binary.BigEndian.Uint16(payload[10:])
		case typ&(1<<31) != 0:
			return fmt.Errorf("option go refused: %#x %s", typ, payload)
		}
	}
}

func (c *Client) sendOpt(opt uint32, data []byte) error {
	b := binary.BigEndian.AppendUint64(nil, nbdOptMagic)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	_, err := c.nc.Write(append(b, data...))
	return err
}

func (c *Client) readOptReply() (uint32, []byte, error) {
	var h [20]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return 0, nil, err
	}
	payload := make([]byte, binary.BigEndian.Uint32(h[16:]))
	_, err := io.ReadFull(c.r, payload)
	return binary.BigEndian.Uint32(h[12:]), payload, err
}

// send writes one request and returns its cookie; safe for concurrent use.
func (c *Client) send(typ, flags uint16, off uint64, length uint32, data []byte) (uint64, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.cookie++
	var h [requestHeaderLen]byte
	binary.BigEndian.PutUint32(h[0:], nbdRequestMagic)
	binary.BigEndian.PutUint16(h[4:], flags)
	binary.BigEndian.PutUint16(h[6:], typ)
	binary.BigEndian.PutUint64(h[8:], c.cookie)
	binary.BigEndian.PutUint64(h[16:], off)
	binary.BigEndian.PutUint32(h[24:], length)
	bufs := net.Buffers{h[:]}
	if len(data) > 0 {
		bufs = append(bufs, data)
	}
	_, err := bufs.WriteTo(c.nc)
	return c.cookie, err
}

// recv reads one reply; readLen is the data length a successful read
// reply carries in simple mode (the client must know it).
func (c *Client) recv(readLen func(cookie uint64) int) (replyMsg, error) {
	var h [4]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return replyMsg{}, err
	}
	switch binary.BigEndian.Uint32(h[:]) {
	case nbdSimpleReplyMagic:
		var rest [12]byte
		if _, err := io.ReadFull(c.r, rest[:]); err != nil {
			return replyMsg{}, err
		}
		m := replyMsg{errno: binary.BigEndian.Uint32(rest[:]), cookie: binary.BigEndian.Uint64(rest[4:])}
		if n := readLen(m.cookie); m.errno == 0 && n > 0 {
			m.data = make([]byte, n)
			_, err := io.ReadFull(c.r, m.data)
			return m, err
		}
		return m, nil
	case nbdStructuredReplyMagic:
		return c.recvChunk()
	}
	return replyMsg{}, errors.New("bad reply magic")
}

// recvChunk reads one structured chunk (the server sends one per reply).
func (c *Client) recvChunk() (replyMsg, error) {
	var h [16]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return replyMsg{}, err
	}
	typ := binary.BigEndian.Uint16(h[2:])
	m := replyMsg{cookie: binary.BigEndian.Uint64(h[4:])}
	payload := make([]byte, binary.BigEndian.Uint32(h[12:]))
	if _, err := io.ReadFull(c.r, payload); err != nil {
		return m, err
	}
	switch typ {
	case nbdReplyTypeError:
		m.errno = binary.BigEndian.Uint32(payload)
	case nbdReplyTypeOffsetData:
		m.data = payload[8:]
	}
	return m, nil
}

// do sends one request and waits for its reply (no other request in flight).
func (c *Client) do(typ, flags uint16, off uint64, length uint32, data []byte) (replyMsg, error) {
	cookie, err := c.send(typ, flags, off, length, data)
	if err != nil {
		return replyMsg{}, err
	}
	m, err := c.recv(func(uint64) int {
		if typ == nbdCmdRead {
			return int(length)
		}
		return 0
	})
	if err == nil && m.cookie != cookie {
		err = fmt.Errorf("reply for cookie %d, want %d", m.cookie, cookie)
	}
	return m, err
}

// pipelineWrites writes data at each offset with up to depth requests in
// flight, then flushes; it returns the first error.
func (c *Client) pipelineWrites(offs []int64, data []byte, depth int) error {
	return c.WriteBlocks(offs, func(int) []byte { return data }, depth)
}

// WriteBlocks writes block(i) at offs[i] with up to depth requests in
// flight, then flushes: when it returns nil every write is acknowledged
// durable. It returns the first error. One goroutine uses it at a time.
func (c *Client) WriteBlocks(offs []int64, block func(i int) []byte, depth int) error {
	window := make(chan struct{}, max(depth, 1))
	errc := make(chan error, 1)
	go func() {
		for range offs {
			m, err := c.recv(func(uint64) int { return 0 })
			if err == nil && m.errno != 0 {
				err = fmt.Errorf("write failed: errno %d", m.errno)
			}
			if err != nil {
				errc <- err
				return
			}
			<-window
		}
		errc <- nil
	}()
	for i, off := range offs {
		select {
		case window <- struct{}{}:
		case err := <-errc:
			return errors.Join(err, errors.New("reply reader stopped early"))
		}
		data := block(i)
		if _, err := c.send(nbdCmdWrite, 0, uint64(off), uint32(len(data)), data); err != nil {
			_ = c.nc.SetDeadline(time.Now()) // unblock the reader
			return errors.Join(err, <-errc)
		}
	}
	if err := <-errc; err != nil {
		return err
	}
	return c.Flush()
}

func (c *Client) disconnect() error {
	_, err := c.send(nbdCmdDisc, 0, 0, 0, nil)
	return errors.Join(err, c.nc.Close())
}

// Size is the export's size in bytes.
func (c *Client) Size() int64 { return c.size }

// ReadAt reads len(p) bytes at off.
func (c *Client) ReadAt(p []byte, off int64) (int, error) {
	m, err := c.do(nbdCmdRead, 0, uint64(off), uint32(len(p)), nil)
	if err == nil && m.errno != 0 {
		err = fmt.Errorf("nbd read at %d: errno %d", off, m.errno)
	}
	if err != nil {
		return 0, err
	}
	return copy(p, m.data), nil
}

// WriteAt writes p at off; fua asks for it to be durable before the reply.
func (c *Client) WriteAt(p []byte, off int64, fua bool) error {
	var flags uint16
	if fua {
		flags = nbdCmdFlagFUA
	}
	m, err := c.do(nbdCmdWrite, flags, uint64(off), uint32(len(p)), p)
	if err == nil && m.errno != 0 {
		err = fmt.Errorf("nbd write at %d: errno %d", off, m.errno)
	}
	return err
}

// Flush makes every acknowledged write durable.
func (c *Client) Flush() error {
	m, err := c.do(nbdCmdFlush, 0, 0, 0, nil)
	if err == nil && m.errno != 0 {
		err = fmt.Errorf("nbd flush: errno %d", m.errno)
	}
	return err
}

// Close disconnects politely and closes the connection; safe twice.
func (c *Client) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.disconnect() })
	return c.closeErr
}
