package jetstream_test

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
)

func TestStartServerRefusesBadConfig(t *testing.T) {
	_, err := jetstream.StartServer(jetstream.ServerConfig{Port: -1, NoLog: true})
	require.ErrorIs(t, err, jetstream.ErrServerConfig, "no store dir")
	_, err = jetstream.StartServer(jetstream.ServerConfig{Dir: t.TempDir(), Port: -1, Routes: []string{"nats://127.0.0.1:1"}, NoLog: true})
	require.ErrorIs(t, err, jetstream.ErrServerConfig, "routes without a cluster name")
}

func TestStartServerDefaultsAndRestart(t *testing.T) {
	s := jstest.MustRunServer(t, func(c *jetstream.ServerConfig) { c.Tags = []string{"site:primary"} })
	require.True(t, s.JetStreamEnabled())
	addr := s.Addr().(*net.TCPAddr)
	require.True(t, addr.IP.IsLoopback())
	s2 := jstest.Restart(t, s)
	require.Equal(t, addr.Port, s2.Addr().(*net.TCPAddr).Port, "same port after restart")
	require.Equal(t, s.Name(), s2.Name())
}

func TestStartServerPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, err = jetstream.StartServer(jetstream.ServerConfig{Dir: t.TempDir(), Port: l.Addr().(*net.TCPAddr).Port, NoLog: true})
	require.ErrorContains(t, err, "cannot listen on 127.0.0.1:")
}
