package nbd

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/rs/zerolog"
)

// ExportDisk is what an NBD export serves. Size is fixed while the disk is
// exported. The server checks every request against Size before calling,
// so offsets and lengths are in range: a request outside the export is
// answered NBD_EINVAL (NBD_ENOSPC for a write, trim or zeroing past the
// end) without a call. Calls come concurrently from several connections
// and from several requests of one connection; the order of overlapping
// requests in flight at the same time is undefined (as in NBD). WriteAt,
// WriteZeroes and Trim with fua return once the change is durable; Flush
// makes every completed write durable.
//
// Errors: a call on a disk that was closed returns an error that matches
// syscall.ESHUTDOWN (errors.Is), which the client gets as NBD_ESHUTDOWN;
// any other error is NBD_EIO. The tracked disk (hostsync/disk) implements
// it.
type ExportDisk interface {
	Size() int64
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64, fua bool) error
	WriteZeroes(off, length int64, fua bool) error
	Trim(off, length int64, fua bool) error
	Flush() error
}

// Server serves named exports over the NBD protocol (fixed newstyle
// negotiation) on Unix sockets and, on request, TCP. Safe for concurrent
// use.
//
// Options: EXPORT_NAME, GO and INFO (export size and flags, name and block
// sizes on request: minimum 1, preferred 4096, maximum 32 MiB), LIST, ABORT
// and STRUCTURED_REPLY; others get NBD_REP_ERR_UNSUP. Commands: READ, WRITE
// (FUA), FLUSH, TRIM (FUA), WRITE_ZEROES (FUA, NO_HOLE) and DISC, up to four
// of one connection at a time. Transmission flags: HAS_FLAGS, SEND_FLUSH,
// SEND_FUA, SEND_TRIM, SEND_WRITE_ZEROES and CAN_MULTI_CONN. A request out
// of range, with unknown flags or of an unknown type gets an error reply
// (EINVAL for reads, ENOSPC for writes past the end), as an
// NBD_REPLY_TYPE_ERROR chunk once structured replies are negotiated, and
// the connection goes on; a write longer than 32 MiB gets EINVAL and the
// connection is closed (its payload cannot be skipped safely); a bad magic
// closes the connection.
type Server struct {
	logger zerolog.Logger

	mu        sync.Mutex
	exports   map[string]*exportState
	listeners []net.Listener
	conns     map[*conn]struct{}
	closed    bool

	wg sync.WaitGroup // accept loops and connections
}

// exportState is one export served: its disk and the connections bound
// to it (nil once the export is removed).
type exportState struct {
	name  string
	disk  ExportDisk
	conns map[*conn]struct{}
}

// NewServer returns a server with no export and no listener.
func NewServer(logger zerolog.Logger) *Server {
	return &Server{
		logger:  logger.With().Str("component", "nbd").Logger(),
		exports: map[string]*exportState{},
		conns:   map[*conn]struct{}{},
	}
}

// URL gives the URL QEMU and libnbd use for an export on a Unix socket:
// nbd+unix:///<disk>?socket=<path>.
func URL(disk, socket string) string {
	return "nbd+unix:///" + urlEscape(disk, false) + "?socket=" + urlEscape(socket, true)
}

// urlEscape percent-encodes everything but unreserved characters (and
// '/' in a path).
func urlEscape(s string, keepSlash bool) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '_', c == '.', c == '~', keepSlash && c == '/':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// AddExport serves disk under name. The name must be 1 to 255 bytes
// without NUL; an existing name is ErrExportExists.
func (s *Server) AddExport(name string, disk ExportDisk) error {
	if name == "" || len(name) > 255 || strings.ContainsRune(name, 0) {
		return fmt.Errorf("nbd export name %q: must be 1 to 255 bytes without NUL", name)
	}
	if disk == nil || disk.Size() <= 0 {
		return fmt.Errorf("nbd export %s: no disk or empty disk", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if _, ok := s.exports[name]; ok {
		return fmt.Errorf("nbd export %s: %w", name, ErrExportExists)
	}
	s.exports[name] = &exportState{name: name, disk: disk, conns: map[*conn]struct{}{}}
	return nil
}

// RemoveExport stops serving name: new clients are refused and existing
// connections are closed. It returns once no request of those connections
// is running, so the disk sees no call from the server afterwards (a fence).
func (s *Server) RemoveExport(name string) error {
	s.mu.Lock()
	e, ok := s.exports[name]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("nbd export %s: %w", name, ErrExportNotFound)
	}
	delete(s.exports, name)
	conns := e.conns
	e.conns = nil
	s.mu.Unlock()
	for c := range conns {
		c.shutdown()
	}
	for c := range conns {
		<-c.done
	}
	return nil
}

// Exports lists the names served.
func (s *Server) Exports() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.exports))
	for n := range s.exports {
		out = append(out, n)
	}
	return out
}

// ListenUnix serves on a Unix socket at path. A stale socket file left at
// path is replaced; any other file there is an error.
func (s *Server) ListenUnix(path string) error {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&fs.ModeSocket == 0 {
			return fmt.Errorf("nbd socket %s: a file that is not a socket is in the way", path)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("remove stale nbd socket: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("nbd listen: %w", err)
	}
	return s.serve(l)
}

// ListenTCP serves on a TCP address (host:port; port 0 picks one) and
// returns the address bound.
func (s *Server) ListenTCP(addr string) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("nbd listen: %w", err)
	}
	if err := s.serve(l); err != nil {
		return nil, err
	}
	return l.Addr(), nil
}

func (s *Server) serve(l net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.Join(ErrServerClosed, l.Close())
	}
	s.listeners = append(s.listeners, l)
	s.wg.Add(1)
	go s.acceptLoop(l)
	return nil
}

func (s *Server) acceptLoop(l net.Listener) {
	defer s.wg.Done()
	for {
		nc, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.logger.Error().Err(err).Msg("nbd accept failed; listener stops")
			}
			return
		}
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = nc.Close() // refused: the server is closing
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.runConn(c)
	}
}

func (s *Server) runConn(c *conn) {
	defer s.wg.Done()
	defer close(c.done)
	err := c.run()
	if err != nil {
		c.logger.Debug().Err(err).Msg("nbd connection ended")
	}
	s.mu.Lock()
	delete(s.conns, c)
	if c.export != nil && c.export.conns != nil {
		delete(c.export.conns, c)
	}
	s.mu.Unlock()
}

// bind attaches a connection to an export at the end of negotiation; it
// fails if the export is gone.
func (s *Server) bind(c *conn, name string) (*exportState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.exports[name]
	if !ok || s.closed {
		return nil, false
	}
	e.conns[c] = struct{}{}
	c.export = e
	return e, true
}

func (s *Server) lookup(name string) (*exportState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.exports[name]
	return e, ok
}

// Close stops listening, closes every connection and waits for them.
// Safe twice.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	clear(s.exports) // nothing is served once closed
	var errs []error
	for _, l := range s.listeners {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown()
	}
	s.wg.Wait()
	return errors.Join(errs...)
}
