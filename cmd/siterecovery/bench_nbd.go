package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The NBD protocol constants the benchmark client uses (fixed newstyle
// handshake, NBD_OPT_GO, simple replies), from the protocol document.
const (
	nbdMagic          = 0x4e42444d41474943 // "NBDMAGIC"
	nbdOptMagic       = 0x49484156454f5054 // "IHAVEOPT"
	nbdOptReplyMagic  = 0x0003e889045565a9
	nbdRequestMagic   = 0x25609513
	nbdSimpleMagic    = 0x67446698
	nbdClientFlags    = 1 | 2 // C_FIXED_NEWSTYLE | C_NO_ZEROES
	nbdOptGo          = 7
	nbdRepAck         = 1
	nbdRepInfo        = 3
	nbdInfoExport     = 0
	nbdCmdWrite       = 1
	nbdCmdDisc        = 2
	nbdCmdFlush       = 3
	nbdRequestHdrSize = 28
)

// benchNBD is a small NBD client for the benchmarks: it writes with many
// requests in flight and flushes, against the agent's export or qemu-nbd.
// One goroutine uses it at a time.
type benchNBD struct {
	conn   net.Conn
	r      *bufio.Reader
	size   int64
	cookie uint64
}

func dialBenchNBD(sock, export string) (*benchNBD, error) {
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &benchNBD{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	if err := c.handshake(export); err != nil {
		return nil, errors.Join(fmt.Errorf("nbd handshake with %s: %w", sock, err), conn.Close())
	}
	return c, nil
}

// dialBenchNBDWait retries until the export is served or d has passed.
func dialBenchNBDWait(ctx context.Context, sock, export string, d time.Duration) (*benchNBD, error) {
	deadline := time.Now().Add(d)
	for {
		c, err := dialBenchNBD(sock, export)
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("export %s on %s not served within %s: %w", export, sock, d, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond): // waiting for the server, bounded by the deadline
		}
	}
}

func (c *benchNBD) handshake(export string) error {
	var greet [18]byte
	if _, err := io.ReadFull(c.r, greet[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint64(greet[:]) != nbdMagic || binary.BigEndian.Uint64(greet[8:]) != nbdOptMagic {
		return errors.New("not a fixed newstyle NBD server")
	}
	msg := binary.BigEndian.AppendUint32(nil, nbdClientFlags)
	msg = binary.BigEndian.AppendUint64(msg, nbdOptMagic)
	msg = binary.BigEndian.AppendUint32(msg, nbdOptGo)
	msg = binary.BigEndian.AppendUint32(msg, uint32(4+len(export)+2))
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(export)))
	msg = append(msg, export...)
	msg = binary.BigEndian.AppendUint16(msg, 0) // no information requests
	if _, err := c.conn.Write(msg); err != nil {
		return err
	}
	for {
		typ, payload, err := c.optReply()
		if err != nil {
			return err
		}
		switch {
		case typ == nbdRepAck:
			return nil
		case typ == nbdRepInfo && len(payload) >= 12 && binary.BigEndian.Uint16(payload) == nbdInfoExport:
			c.size = int64(binary.BigEndian.Uint64(payload[2:]))
		case typ&(1<<31) != 0:
			return fmt.Errorf("export %q refused: reply %#x %q", export, typ, payload)
		}
	}
}

func (c *benchNBD) optReply() (uint32, []byte, error) {
	var h [20]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return 0, nil, err
	}
	if binary.BigEndian.Uint64(h[:]) != nbdOptReplyMagic {
		return 0, nil, errors.New("bad option reply magic")
	}
	n := binary.BigEndian.Uint32(h[16:])
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("option reply of %d bytes", n)
	}
	payload := make([]byte, n)
	_, err := io.ReadFull(c.r, payload)
	return binary.BigEndian.Uint32(h[12:]), payload, err
}

func (c *benchNBD) send(w io.Writer, typ uint16, off uint64, length uint32, data []byte) error {
	c.cookie++
	var h [nbdRequestHdrSize]byte
	binary.BigEndian.PutUint32(h[0:], nbdRequestMagic)
	binary.BigEndian.PutUint16(h[6:], typ)
	binary.BigEndian.PutUint64(h[8:], c.cookie)
	binary.BigEndian.PutUint64(h[16:], off)
	binary.BigEndian.PutUint32(h[24:], length)
	bufs := net.Buffers{h[:]}
	if len(data) > 0 {
		bufs = append(bufs, data)
	}
	_, err := bufs.WriteTo(w)
	return err
}

// reply reads one simple reply (writes and flushes carry no data).
func (c *benchNBD) reply() error {
	var h [16]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint32(h[:]) != nbdSimpleMagic {
		return errors.New("bad reply magic")
	}
	if errno := binary.BigEndian.Uint32(h[4:]); errno != 0 {
		return fmt.Errorf("nbd request failed: errno %d", errno)
	}
	return nil
}

// writes writes block(i) at offs[i] with up to depth requests in flight,
// then flushes: when it returns nil every write is acknowledged durable.
func (c *benchNBD) writes(offs []int64, block func(i int) []byte, depth int) error {
	window := make(chan struct{}, depth)
	done := make(chan struct{})
	var rerr error
	go func() {
		defer close(done)
		for range offs {
			if rerr = c.reply(); rerr != nil {
				return
			}
			<-window
		}
	}()
	var serr error
send:
	for i, off := range offs {
		select {
		case window <- struct{}{}:
		case <-done: // the reader stopped on an error
			break send
		}
		data := block(i)
		if serr = c.send(c.conn, nbdCmdWrite, uint64(off), uint32(len(data)), data); serr != nil {
			_ = c.conn.SetDeadline(time.Now()) // unblock the reader
			break
		}
	}
	<-done
	if err := errors.Join(rerr, serr); err != nil {
		return err
	}
	if err := c.send(c.conn, nbdCmdFlush, 0, 0, nil); err != nil {
		return err
	}
	return c.reply()
}

// Close disconnects politely and closes the connection.
func (c *benchNBD) Close() error {
	err := c.send(c.conn, nbdCmdDisc, 0, 0, nil)
	return errors.Join(err, c.conn.Close())
}
