package jstest

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/siterecovery/siterecovery/events/jetstream"
)

// configs remembers how each server of this process was started, with the
// ports it got, so that Restart brings it back the same.
var configs sync.Map // *server.Server -> jetstream.ServerConfig

// MustRunServer starts a single embedded JetStream server for tb: loopback,
// a random client port, a store in tb.TempDir(), SyncAlways, no log. opts
// may change the config before start. The server shuts down when the test
// ends.
func MustRunServer(tb testing.TB, opts ...func(*jetstream.ServerConfig)) *server.Server {
	tb.Helper()
	cfg := jetstream.ServerConfig{Dir: tb.TempDir(), Port: -1, SyncAlways: true, NoLog: true}
	for _, o := range opts {
		o(&cfg)
	}
	return mustStart(tb, cfg)
}

// MustRunCluster starts n embedded JetStream servers clustered on loopback
// (random ports, a store each in tb.TempDir(), SyncAlways) and waits until
// the cluster has a JetStream meta leader. tags, when not empty, gives
// server i the tag tags[i % len(tags)] (e.g. "site:primary"). They all shut
// down when the test ends.
func MustRunCluster(tb testing.TB, n int, tags []string) []*server.Server {
	tb.Helper()
	ports := freePorts(tb, n)
	routes := make([]string, n)
	for i, p := range ports {
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	name := fmt.Sprintf("C%d", time.Now().UnixNano())
	servers := make([]*server.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := jetstream.ServerConfig{
			Name: fmt.Sprintf("%s-S%d", name, i+1), Dir: tb.TempDir(), Port: -1, SyncAlways: true, NoLog: true,
			ClusterName: name, ClusterHost: "127.0.0.1", ClusterPort: ports[i], Routes: routes,
		}
		if len(tags) > 0 {
			cfg.Tags = []string{tags[i%len(tags)]}
		}
		wg.Go(func() { servers[i], errs[i] = start(tb, cfg) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatalf("jstest: start cluster: %v", err)
		}
	}
	waitPeers(tb, servers)
	for _, s := range servers {
		waitAPI(tb, s)
	}
	return servers
}

// waitPeers waits until the JetStream meta leader sees every other server
// as a current peer: before that, placing an R3 stream can fail.
func waitPeers(tb testing.TB, servers []*server.Server) {
	tb.Helper()
	deadline := time.Now().Add(jetstream.StartTimeout)
	for !peersCurrent(servers) {
		if time.Now().After(deadline) {
			tb.Fatalf("jstest: the cluster's meta leader does not see all %d servers", len(servers))
		}
		time.Sleep(10 * time.Millisecond) // polling the servers' own state
	}
}

func peersCurrent(servers []*server.Server) bool {
	for _, s := range servers {
		if !s.JetStreamIsLeader() {
			continue
		}
		info, err := s.Jsz(&server.JSzOptions{})
		if err != nil || info.Meta == nil || len(info.Meta.Replicas) != len(servers)-1 {
			return false
		}
		for _, p := range info.Meta.Replicas {
			if !p.Current || p.Offline {
				return false
			}
		}
		return true
	}
	return false
}

// waitAPI waits until s answers JetStream API requests: right after a
// cluster elects its meta leader, a first request can go unanswered.
func waitAPI(tb testing.TB, s *server.Server) {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		tb.Fatalf("jstest: connect %s: %v", s.Name(), err)
	}
	defer nc.Close()
	deadline := time.Now().Add(jetstream.StartTimeout)
	for {
		_, err := nc.Request("$JS.API.INFO", nil, 500*time.Millisecond)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("jstest: %s does not answer JetStream API requests: %v", s.Name(), err)
		}
	}
}

// MustConnect connects to url for tb with a client that reconnects quickly
// and forever (tests restart servers under it) and closes when the test
// ends.
func MustConnect(tb testing.TB, url string) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url,
		nats.Name(tb.Name()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(25*time.Millisecond),
		nats.ReconnectJitter(0, 0),
		nats.RetryOnFailedConnect(false),
	)
	if err != nil {
		tb.Fatalf("jstest: connect %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// URL is the client URL of s.
func URL(s *server.Server) string { return s.ClientURL() }

// Restart shuts s down and starts it again with the same name, store,
// client port and cluster settings; it waits until the new server is ready
// (in a cluster, until there is a meta leader). s must come from this
// package. Clients made with MustConnect reconnect by themselves.
func Restart(tb testing.TB, s *server.Server) *server.Server {
	tb.Helper()
	v, ok := configs.Load(s)
	if !ok {
		tb.Fatalf("jstest: Restart: server %s was not started by jstest", s.Name())
	}
	s.Shutdown()
	s.WaitForShutdown()
	configs.Delete(s)
	s = mustStart(tb, v.(jetstream.ServerConfig))
	waitAPI(tb, s)
	return s
}

func mustStart(tb testing.TB, cfg jetstream.ServerConfig) *server.Server {
	tb.Helper()
	s, err := start(tb, cfg)
	if err != nil {
		tb.Fatalf("jstest: %v", err)
	}
	return s
}

// start starts a server, remembers its config with the ports it got, and
// shuts it down at cleanup.
func start(tb testing.TB, cfg jetstream.ServerConfig) (*server.Server, error) {
	s, err := jetstream.StartServer(cfg)
	if err != nil {
		return nil, err
	}
	cfg.Name = s.Name()
	cfg.Port = s.Addr().(*net.TCPAddr).Port
	configs.Store(s, cfg)
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
		configs.Delete(s)
	})
	return s, nil
}

// freePorts returns n loopback TCP ports that were free a moment ago; the
// cluster ports must be known before the servers start, to list the routes.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("jstest: free port: %v", err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		defer l.Close()
	}
	return ports
}
