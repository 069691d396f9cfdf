package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/siterecovery/siterecovery/events/jetstream"
)

// A NATS server in a process of its own, so that a test can kill -9 it:
// an embedded server's Shutdown steps down the raft groups it leads
// first, which a crashed server never does, and the survivors then elect
// no one by timeout. The child is this test binary run again with
// natsChildEnv holding the server's config (TestMain calls runNATSChild).

// natsChildEnv names the environment variable that makes the test binary a
// NATS server.
const natsChildEnv = "SR_TEST_NATS_SERVER"

// runNATSChild runs the server cfgJSON describes, says "ready" on stdout
// and serves until it is killed. It returns an exit status on failure.
func runNATSChild(cfgJSON string) int {
	var cfg jetstream.ServerConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "nats child: config:", err)
		return 2
	}
	s, err := jetstream.StartServer(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nats child:", err)
		return 1
	}
	fmt.Println("ready", s.ClientURL())
	_, _ = io.Copy(io.Discard, os.Stdin) // the parent's end closes when it dies
	s.Shutdown()
	return 0
}

// natsProc is a NATS server running as a child process.
type natsProc struct {
	name, url string
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	once      sync.Once
}

// ClientURL and Name make a natsProc a siteServer.
func (p *natsProc) ClientURL() string { return p.url }
func (p *natsProc) Name() string      { return p.name }

// kill is kill -9, then the child is reaped. Safe twice.
func (p *natsProc) kill() {
	p.once.Do(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	})
}

// mustRunProcCluster starts one server process per tag, clustered on
// loopback (fixed ports picked before the start, a store each in a
// temporary directory, SyncAlways), and waits until an R3 stream can be
// placed. They are killed when the test ends.
func mustRunProcCluster(t testing.TB, tags []string) []*natsProc {
	t.Helper()
	n := len(tags)
	ports := freePortsN(t, 2*n)
	routes := make([]string, n)
	for i := range n {
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[n+i])
	}
	cluster := fmt.Sprintf("P%d", time.Now().UnixNano())
	procs := make([]*natsProc, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := jetstream.ServerConfig{Name: fmt.Sprintf("%s-S%d", cluster, i+1), Dir: t.TempDir(), Port: ports[i],
			SyncAlways: true, NoLog: true, ClusterName: cluster, ClusterHost: "127.0.0.1", ClusterPort: ports[n+i],
			Routes: routes, Tags: []string{tags[i]}}
		wg.Go(func() { procs[i], errs[i] = startNATSProc(t, cfg) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("nats process cluster: %v", err)
		}
	}
	waitR3Placeable(t, procs[0].url)
	return procs
}

// startNATSProc starts the child and waits for its "ready".
func startNATSProc(t testing.TB, cfg jetstream.ServerConfig) (*natsProc, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	p := &natsProc{name: cfg.Name, cmd: exec.Command(os.Args[0], "-test.run=^$")}
	p.cmd.Env = append(os.Environ(), natsChildEnv+"="+string(raw))
	p.cmd.Stderr = os.Stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	t.Cleanup(p.kill)
	line, err := bufio.NewReader(out).ReadString('\n')
	if !strings.HasPrefix(line, "ready ") {
		return nil, fmt.Errorf("server %s did not start: %q %v", cfg.Name, line, err)
	}
	p.url = strings.TrimSpace(strings.TrimPrefix(line, "ready "))
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return p, nil
}

// waitR3Placeable waits until the cluster places a three-replica stream
// (the meta leader sees every peer), then removes it.
func waitR3Placeable(t testing.TB, url string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(jetstream.StartTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "SR_READY", Subjects: []string{"sr.ready"}, Replicas: 3})
		if err == nil {
			err = js.DeleteStream(ctx, "SR_READY")
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the process cluster places no R3 stream: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling the cluster with a deadline
	}
}

// freePortsN returns n loopback TCP ports that were free a moment ago.
func freePortsN(t testing.TB, n int) []int {
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
	}
	return ports
}
