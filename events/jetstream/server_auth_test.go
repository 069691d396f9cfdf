package jetstream_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events/jetstream"
)

func TestStartServerRefusesBadAuth(t *testing.T) {
	dir := t.TempDir()
	start := func(a *jetstream.AuthConfig) error {
		s, err := jetstream.StartServer(jetstream.ServerConfig{Dir: dir, Port: -1, NoLog: true, Auth: a})
		if s != nil {
			s.Shutdown()
		}
		return err
	}
	user := jetstream.TLSUser{Subject: "CN=hv01,OU=host,O=siterecovery"}
	missing := filepath.Join(dir, "missing.pem")
	require.ErrorIs(t, start(&jetstream.AuthConfig{Users: []jetstream.TLSUser{user}}), jetstream.ErrServerConfig, "no files")
	require.ErrorIs(t, start(&jetstream.AuthConfig{CAFile: missing, CertFile: missing, KeyFile: missing}), jetstream.ErrServerConfig, "no users")
	require.ErrorIs(t, start(&jetstream.AuthConfig{CAFile: missing, CertFile: missing, KeyFile: missing, Users: []jetstream.TLSUser{user}}), jetstream.ErrServerConfig, "unreadable files")
}
