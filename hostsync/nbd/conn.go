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

	"github.com/rs/zerolog"
)

// handshakeTimeout bounds the whole negotiation phase.
const handshakeTimeout = 30 * time.Second

// conn is one client connection: negotiation, then transmission.
type conn struct {
	srv    *Server
	nc     net.Conn
	r      *bufio.Reader
	logger zerolog.Logger
	done   chan struct{} // closed when run has returned

	export     *exportState // set by bind, under srv.mu
	structured bool

	wmu  sync.Mutex // serialises replies
	wbuf []byte
}

var errAbort = errors.New("nbd: client aborted negotiation")

func newConn(s *Server, nc net.Conn) *conn {
	return &conn{
		srv: s, nc: nc, r: bufio.NewReaderSize(nc, 256<<10), done: make(chan struct{}),
		logger: s.logger.With().Str("remote", nc.RemoteAddr().String()).Logger(),
	}
}

// shutdown closes the socket; run then returns once in-flight requests end.
func (c *conn) shutdown() {
	_ = c.nc.Close() // a second close reports net.ErrClosed, which is fine
}

func (c *conn) run() error {
	defer c.shutdown()
	if err := c.nc.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return err
	}
	e, err := c.negotiate()
	if err != nil {
		return err
	}
	if err := c.nc.SetDeadline(time.Time{}); err != nil {
		return err
	}
	return c.transmit(e)
}

// negotiate runs the fixed newstyle handshake and the option haggling; it
// returns the export the client chose.
func (c *conn) negotiate() (*exportState, error) {
	greet := binary.BigEndian.AppendUint64(nil, nbdMagic)
	greet = binary.BigEndian.AppendUint64(greet, nbdOptMagic)
	greet = binary.BigEndian.AppendUint16(greet, nbdFlagFixedNewstyle|nbdFlagNoZeroes)
	if _, err := c.nc.Write(greet); err != nil {
		return nil, err
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.r, cf[:]); err != nil {
		return nil, err
	}
	clientFlags := binary.BigEndian.Uint32(cf[:])
	if clientFlags&^(nbdFlagFixedNewstyle|nbdFlagNoZeroes) != 0 {
		return nil, fmt.Errorf("nbd: unknown client flags %#x", clientFlags)
	}
	for {
		e, err := c.option(clientFlags&nbdFlagNoZeroes != 0)
		if err != nil || e != nil {
			return e, err
		}
	}
}

// option reads and answers one option; it returns the export when the
// client enters transmission.
func (c *conn) option(noZeroes bool) (*exportState, error) {
	var h [16]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return nil, err
	}
	if binary.BigEndian.Uint64(h[:]) != nbdOptMagic {
		return nil, errors.New("nbd: bad option magic")
	}
	opt, n := binary.BigEndian.Uint32(h[8:]), binary.BigEndian.Uint32(h[12:])
	if n > maxOptionLen {
		return nil, fmt.Errorf("nbd: option %d of %d bytes is too long", opt, n)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(c.r, data); err != nil {
		return nil, err
	}
	switch opt {
	case nbdOptExportName:
		return c.optExportName(string(data), noZeroes)
	case nbdOptAbort:
		// The client may close before reading the ack; its error is moot.
		_ = c.optReply(opt, nbdRepAck, nil)
		return nil, errAbort
	case nbdOptList:
		return nil, c.optList(data)
	case nbdOptStructuredReply:
		if len(data) != 0 {
			return nil, c.optError(opt, nbdRepErrInvalid, "structured reply option takes no data")
		}
		c.structured = true
		return nil, c.optReply(opt, nbdRepAck, nil)
	case nbdOptInfo, nbdOptGo:
		return c.optInfo(opt, data)
	}
	return nil, c.optError(opt, nbdRepErrUnsup, fmt.Sprintf("option %d not supported", opt))
}

func (c *conn) optReply(opt, typ uint32, data []byte) error {
	b := putOptReply(nil, opt, typ, len(data))
	_, err := c.nc.Write(append(b, data...))
	return err
}

func (c *conn) optError(opt, typ uint32, msg string) error {
	return c.optReply(opt, typ, []byte(msg))
}

// optExportName answers the old NBD_OPT_EXPORT_NAME: an unknown export
// closes the connection, as the protocol requires.
func (c *conn) optExportName(name string, noZeroes bool) (*exportState, error) {
	e, ok := c.srv.bind(c, name)
	if !ok {
		return nil, fmt.Errorf("nbd: unknown export %q", name)
	}
	b := binary.BigEndian.AppendUint64(nil, uint64(e.disk.Size()))
	b = binary.BigEndian.AppendUint16(b, transmitFlags)
	if !noZeroes {
		b = append(b, make([]byte, 124)...)
	}
	_, err := c.nc.Write(b)
	return e, err
}

func (c *conn) optList(data []byte) error {
	if len(data) != 0 {
		return c.optError(nbdOptList, nbdRepErrInvalid, "list option takes no data")
	}
	for _, name := range c.srv.Exports() {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
		if err := c.optReply(nbdOptList, nbdRepServer, append(b, name...)); err != nil {
			return err
		}
	}
	return c.optReply(nbdOptList, nbdRepAck, nil)
}

// optInfo answers NBD_OPT_INFO and NBD_OPT_GO: the export's size and flags,
// its name and block sizes when asked; GO then enters transmission.
func (c *conn) optInfo(opt uint32, data []byte) (*exportState, error) {
	req, err := parseInfoRequest(data)
	if err != nil {
		return nil, c.optError(opt, nbdRepErrInvalid, err.Error())
	}
	e, ok := c.srv.lookup(req.name)
	if !ok {
		return nil, c.optError(opt, nbdRepErrUnknown, fmt.Sprintf("no export named %q", req.name))
	}
	info := binary.BigEndian.AppendUint16(nil, nbdInfoExport)
	info = binary.BigEndian.AppendUint64(info, uint64(e.disk.Size()))
	info = binary.BigEndian.AppendUint16(info, transmitFlags)
	if err := c.optReply(opt, nbdRepInfo, info); err != nil {
		return nil, err
	}
	for _, t := range req.infos {
		if err := c.optInfoItem(opt, t, req.name); err != nil {
			return nil, err
		}
	}
	if opt == nbdOptInfo {
		return nil, c.optReply(opt, nbdRepAck, nil)
	}
	if e, ok = c.srv.bind(c, req.name); !ok {
		return nil, c.optError(opt, nbdRepErrUnknown, fmt.Sprintf("export %q was removed", req.name))
	}
	return e, c.optReply(opt, nbdRepAck, nil)
}

func (c *conn) optInfoItem(opt uint32, typ uint16, name string) error {
	b := binary.BigEndian.AppendUint16(nil, typ)
	switch typ {
	case nbdInfoName:
		b = append(b, name...)
	case nbdInfoBlockSize:
		b = binary.BigEndian.AppendUint32(b, 1)
		b = binary.BigEndian.AppendUint32(b, preferredBlock)
		b = binary.BigEndian.AppendUint32(b, maxPayload)
	default:
		return nil // unknown or already sent information types are ignored
	}
	return c.optReply(opt, nbdRepInfo, b)
}
