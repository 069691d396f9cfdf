package nbd

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// seedSession is a valid client byte stream: flags, options, requests.
func seedSession(structured bool) []byte {
	b := binary.BigEndian.AppendUint32(nil, nbdFlagFixedNewstyle|nbdFlagNoZeroes)
	opt := func(o uint32, data []byte) {
		b = binary.BigEndian.AppendUint64(b, nbdOptMagic)
		b = binary.BigEndian.AppendUint32(b, o)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		b = append(b, data...)
	}
	opt(nbdOptList, nil)
	if structured {
		opt(nbdOptStructuredReply, nil)
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
	f.Add(seedSession(false))
	f.Add(seedSession(true))
	f.Add([]byte{0, 0, 0, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		if r, err := parseRequest(in); err == nil {
			_ = r.check(4096)
		}
		srv := NewServer(zerolog.Nop())
		require.NoError(t, srv.AddExport("d0", newMemDisk(4096)))
		client, server := net.Pipe()
		c := newConn(srv, server)
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
