package jetstream

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nuid"
)

// Defaults of ServerConfig.
const (
	DefaultHost       = "127.0.0.1"
	DefaultPort       = 4222
	DefaultMaxPayload = 8 << 20
	// StartTimeout bounds how long StartServer waits for a server to accept
	// connections and for JetStream to be ready (a meta leader in a cluster).
	StartTimeout = 30 * time.Second
)

// ServerConfig configures an embedded nats-server with JetStream, as used by
// `siterecovery serve`, the demo and the tests.
type ServerConfig struct {
	// Name is the server name, unique in a cluster (default generated).
	Name string
	// Dir is the JetStream store directory (required).
	Dir string
	// Host is the client listen address (default 127.0.0.1).
	Host string
	// Port is the client port (default 4222; -1 picks a random free port).
	Port int
	// SyncAlways fsyncs every write before it is acknowledged
	// (sync_interval: always). serve and the tests set it: an acknowledged
	// event survives power loss.
	SyncAlways bool
	// MaxPayload is the largest message the server accepts (default 8 MiB).
	MaxPayload int32
	// ClusterName, ClusterHost, ClusterPort and Routes cluster the server
	// with others (optional; ClusterPort -1 picks a random port).
	ClusterName string
	ClusterHost string
	ClusterPort int
	Routes      []string
	// Tags are the server's placement tags, e.g. "site:primary".
	Tags []string
	// NoLog silences the server's own logger.
	NoLog bool
	// Auth, when set, requires mutual TLS and maps client certificates
	// to users with permissions (server_auth.go).
	Auth *AuthConfig
}

// StartServer starts an embedded server and waits, at most StartTimeout,
// until it accepts connections and its JetStream is ready; in a cluster
// until a meta leader exists, which needs a quorum of the cluster's servers
// running (start them concurrently). On failure the server is shut down.
func StartServer(cfg ServerConfig) (*server.Server, error) {
	opts, err := serverOptions(cfg)
	if err != nil {
		return nil, err
	}
	if err := cfg.Auth.apply(opts); err != nil {
		return nil, err
	}
	if err := checkPorts(opts); err != nil {
		return nil, fmt.Errorf("nats server %s: %w", opts.ServerName, err)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server %s: %w", opts.ServerName, err)
	}
	if !cfg.NoLog {
		s.ConfigureLogger()
	}
	go s.Start()
	if err := waitReady(s, time.Now().Add(StartTimeout)); err != nil {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("nats server %s: %w", opts.ServerName, err)
	}
	return s, nil
}

// maxPending is the bytes a server holds for a client that has not read
// them yet before it cuts the client as a slow consumer.
const maxPending = 256 << 20

func serverOptions(cfg ServerConfig) (*server.Options, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("nats server: %w: the JetStream store dir is required", ErrServerConfig)
	}
	opts := &server.Options{
		ServerName: cfg.Name, Host: cfg.Host, Port: cfg.Port,
		JetStream: true, StoreDir: cfg.Dir, SyncAlways: cfg.SyncAlways,
		MaxPayload: cfg.MaxPayload, NoLog: cfg.NoLog, NoSigs: true, Tags: cfg.Tags,
	}
	if opts.ServerName == "" {
		opts.ServerName = "sr-" + nuid.Next()
	}
	if opts.Host == "" {
		opts.Host = DefaultHost
	}
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	if opts.MaxPayload == 0 {
		opts.MaxPayload = DefaultMaxPayload
	}
	// A recovery host's agent takes the batches of all its VMs on one
	// connection; the default 64 MiB of pending bytes would cut it when
	// many VMs catch up at once (hostsync's pullShare).
	opts.MaxPending = maxPending
	if cfg.ClusterName == "" && (cfg.ClusterPort != 0 || len(cfg.Routes) > 0) {
		return nil, fmt.Errorf("nats server: %w: clustering needs a cluster name", ErrServerConfig)
	}
	if cfg.ClusterName == "" {
		return opts, nil
	}
	opts.Cluster.Name, opts.Cluster.Host, opts.Cluster.Port = cfg.ClusterName, cfg.ClusterHost, cfg.ClusterPort
	if opts.Cluster.Host == "" {
		opts.Cluster.Host = opts.Host
	}
	for _, r := range cfg.Routes {
		u, err := url.Parse(r)
		if err != nil {
			return nil, fmt.Errorf("nats server: route %q: %v: %w", r, err, ErrServerConfig)
		}
		opts.Routes = append(opts.Routes, u)
	}
	return opts, nil
}

// checkPorts fails fast, with the address, when a fixed port is taken: the
// server itself would only log it and never become ready.
func checkPorts(opts *server.Options) error {
	addrs := []string{}
	if opts.Port > 0 {
		addrs = append(addrs, net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port)))
	}
	if opts.Cluster.Port > 0 {
		addrs = append(addrs, net.JoinHostPort(opts.Cluster.Host, strconv.Itoa(opts.Cluster.Port)))
	}
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("cannot listen on %s: %w", a, err)
		}
		l.Close()
	}
	return nil
}

// waitReady waits until s accepts clients and JetStream is usable.
func waitReady(s *server.Server, deadline time.Time) error {
	if !s.ReadyForConnections(time.Until(deadline)) {
		return errors.New("not ready for connections in time")
	}
	for {
		ready, why := jetStreamReady(s)
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("JetStream not ready after %s: %s", StartTimeout, why)
		}
		time.Sleep(20 * time.Millisecond) // polling the server's own state
	}
}

func jetStreamReady(s *server.Server) (bool, string) {
	if !s.JetStreamEnabled() {
		return false, "JetStream is not enabled"
	}
	if !s.JetStreamIsClustered() {
		return true, ""
	}
	info, err := s.Jsz(&server.JSzOptions{})
	if err != nil {
		return false, err.Error()
	}
	if info.Meta == nil || info.Meta.Leader == "" {
		return false, "no JetStream meta leader (is a quorum of the cluster running?)"
	}
	return true, ""
}
