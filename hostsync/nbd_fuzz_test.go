package hostsync

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// memDisk is an in-memory ExportDisk for fuzzing the protocol code.
type memDisk struct {
	mu  sync.Mutex
	buf []byte
}

var _ ExportDisk = (*memDisk)(nil)

func (m *memDisk) Size() int64 { return int64(len(m.buf)) }
func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(p, m.buf[off:]), nil
}
func (m *memDisk) WriteAt(p []byte, off int64, _ bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	copy(m.buf[off:], p)
	return nil
}
func (m *memDisk) WriteZeroes(off, n int64, _ bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.buf[off : off+n])
	return nil
}
func (m *memDisk) Trim(off, n int64, fua bool) error { return m.WriteZeroes(off, n, fua) }
func (m *memDisk) Flush() error                      { return nil }

// nbdSeedSession is a valid client byte stream: flags, options, requests.
func nbdSeedSession(structured bool) []byte {
	b := binary.BigEndian.AppendUint32(nil, nbdFlagFixedNewstyle|nbdFlagNoZeroes)
	opt := func(o uint32, data []byte) {
		b = binary.BigEndian.AppendUint64(b, nbdOptMagic)
		b = binary.BigEndian.AppendUint32(b, o)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		b = append(b, data...)
	}
	opt(nbdOptList, nil)
	if structured {
		opt(nbdOptStructuredRepl, nil)
	}
	info := append(binary.BigEndian.AppendUint32(nil, 2), "d0"...)
	info = binary.BigEndian.AppendUint16(info, 2)
	info = binary.BigEndian.AppendUint16(info, nbdInfoBlockSize)
	info = binary.BigEndian.AppendUint16(info, nbdInfoName)
	opt(nbdOptInfo, info)
	opt(nbdOptGo, info)
	req := func(typ, flags uint16, off uint64, n uint32, data []byte) {
		b = binary.BigEndian.AppendUint32(b, nbdRequestMagic)
		b = binary.BigEndian.AppendUint16(b, flags)
		b = binary.BigEndian.AppendUint16(b, typ)
		b = binary.BigEndian.AppendUint64(b, 7)
		b = binary.BigEndian.AppendUint64(b, off)
		b = binary.BigEndian.AppendUint32(b, n)
		b = append(b, data...)
	}
	req(nbdCmdWrite, nbdCmdFlagFUA, 10, 4, []byte("abcd"))
	req(nbdCmdRead, 0, 8, 8, nil)
	req(nbdCmdWriteZeroes, nbdCmdFlagNoHole, 0, 100, nil)
	req(nbdCmdTrim, 0, 4000, 1000, nil)
	req(nbdCmdFlush, 0, 0, 0, nil)
	req(nbdCmdRead, 0, 4090, 100, nil)
	req(nbdCmdDisc, 0, 0, 0, nil)
	return b
}

// FuzzNBDRequest feeds arbitrary client bytes to a server connection (and
// to the request parser): it never panics and always ends.
func FuzzNBDRequest(f *testing.F) {
	f.Add(nbdSeedSession(false))
	f.Add(nbdSeedSession(true))
	f.Add([]byte{0, 0, 0, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		if r, err := parseNBDRequest(in); err == nil {
			_ = r.check(4096)
		}
		srv := NewNBDServer(zerolog.Nop())
		require.NoError(t, srv.AddExport("d0", &memDisk{buf: make([]byte, 4096)}))
		client, server := net.Pipe()
		c := newNBDConn(srv, server)
		done := make(chan error, 1)
		go func() { done <- c.run() }()
		go func() { _, _ = io.Copy(io.Discard, client) }() // drain replies
		_, _ = io.Copy(client, bytes.NewReader(in))        // the server may hang up early
		require.NoError(t, client.Close())
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("server connection did not end")
		}
		require.NoError(t, srv.Close())
	})
}
