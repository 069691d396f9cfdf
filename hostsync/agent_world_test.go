package hostsync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
	"github.com/siterecovery/siterecovery/handlers"
	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/hostsync/cycle/cycletest"
	"github.com/siterecovery/siterecovery/hostsync/natsbus"
	"github.com/siterecovery/siterecovery/hostsync/nbd"
)

// world is a two-site fabric on an embedded JetStream server: the command
// service and the agent report handlers of the control plane, a source host
// hv01 (site primary) and a recovery host hv11 (site secondary), each with
// its own data directory, and one VM web01 with one disk d0.
type world struct {
	t      testing.TB
	size   int64 // of disk d0
	ctx    context.Context
	srv    *server.Server
	nc     *nats.Conn
	log    *jetstream.Log
	dirs   map[string]string
	agents map[string]*hostsync.Agent
	logger zerolog.Logger
}

const (
	diskSize = 8 << 20
	irChunk  = 1 << 20
)

func mustWorld(t testing.TB) *world {
	t.Helper()
	needQEMU(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w := &world{t: t, size: diskSize, ctx: ctx, dirs: map[string]string{}, agents: map[string]*hostsync.Agent{}, logger: testLogger(t)}
	w.srv = jstest.MustRunServer(t)
	w.nc = jstest.MustConnect(t, w.srv.ClientURL())
	var err error
	w.log, err = jetstream.Open(ctx, w.nc, jetstream.Config{Logger: w.logger})
	require.NoError(t, err)
	t.Cleanup(func() { w.log.Close() })
	svc := handlers.New(w.log, nil, w.logger)
	require.NoError(t, svc.Open(ctx, w.nc))
	t.Cleanup(func() { svc.Close(context.Background()) })
	agentSvc, err := micro.AddService(w.nc, micro.Config{Name: "siterecovery-agents", Version: "0.1.0"})
	require.NoError(t, err)
	t.Cleanup(func() { agentSvc.Stop() })
	require.NoError(t, handlers.NewAgentHandlers(w.log, 0, w.logger).AddEndpoints(ctx, agentSvc))
	w.dirs["hv01"], w.dirs["hv11"] = shortTempDir(t), shortTempDir(t)
	return w
}

// transport is the agents' transport on nc: the NATS adapter.
func transport(tb testing.TB, nc *nats.Conn) hostsync.Transport {
	tb.Helper()
	bus, err := natsbus.New(nc)
	require.NoError(tb, err)
	return bus.Transport()
}

// shortTempDir is a temp dir with a path short enough for a Unix socket.
func shortTempDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "sr")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func testLogger(t testing.TB) zerolog.Logger {
	if os.Getenv("SR_TEST_LOG") == "" {
		return zerolog.Nop()
	}
	var out io.Writer = zerolog.NewTestWriter(t)
	if path := os.Getenv("SR_TEST_LOG"); filepath.IsAbs(path) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		require.NoError(t, err)
		t.Cleanup(func() { f.Close() })
		out = f
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	return zerolog.New(out).Level(zerolog.DebugLevel).With().Timestamp().Logger()
}

func needQEMU(t testing.TB) {
	if _, err := exec.LookPath("qemu-io"); err != nil {
		t.Skip("qemu-io missing: apt-get install -y qemu-utils")
	}
}

// cmd runs a control plane command and fails the test on a refusal.
func (w *world) cmd(subject string, body any) {
	w.t.Helper()
	data, err := json.Marshal(body)
	require.NoError(w.t, err)
	msg, err := w.nc.Request(subject, data, 10*time.Second)
	require.NoError(w.t, err)
	require.NotContains(w.t, string(msg.Data), `"error"`, "%s: %s", subject, msg.Data)
}

type m = map[string]any

// fabric registers the sites, hosts, clouds, a 1 s policy, the pairing
// and VM web01 on hv01.
func (w *world) fabric(policy m) {
	w.cmd("sr.cmd.site.register", m{"name": "primary"})
	w.cmd("sr.cmd.site.register", m{"name": "secondary"})
	w.cmd("sr.cmd.host.register", m{"name": "hv01", "site": "primary"})
	w.cmd("sr.cmd.host.register", m{"name": "hv11", "site": "secondary"})
	w.cmd("sr.cmd.cloud.create", m{"name": "gold", "site": "primary", "hosts": []string{"hv01"}})
	w.cmd("sr.cmd.cloud.create", m{"name": "gold-dr", "site": "secondary", "hosts": []string{"hv11"}})
	p := m{"name": "p1", "copy_frequency": "1s", "retention": "24h", "compression": true}
	for k, v := range policy {
		p[k] = v
	}
	w.cmd("sr.cmd.policy.create", p)
	w.cmd("sr.cmd.pairing.create", m{"source": "gold", "target": "gold-dr", "policy": "p1"})
	w.cmd("sr.cmd.vm.create", m{"name": "web01", "host": "hv01", "disks": []events.DiskSpec{{Name: "d0", Size: w.size}}})
}

// startAgent starts the agent of host on its own connection and log.
func (w *world) startAgent(host string, mod ...func(*hostsync.AgentConfig)) *hostsync.Agent {
	w.t.Helper()
	nc := jstest.MustConnect(w.t, w.srv.ClientURL())
	log, err := jetstream.Open(w.ctx, nc, jetstream.Config{Logger: w.logger})
	require.NoError(w.t, err)
	cfg := hostsync.AgentConfig{
		Host: host, DataDir: w.dirs[host], Transport: transport(w.t, nc), Log: log, Logger: w.logger.With().Str("agent", host).Logger(),
		HeartbeatEvery: time.Second, IRChunk: irChunk, ResendAfter: 2 * time.Second, DiskBootID: "test-boot",
	}
	for _, f := range mod {
		f(&cfg)
	}
	a, err := hostsync.NewAgent(cfg)
	require.NoError(w.t, err)
	require.NoError(w.t, a.Open(w.ctx))
	w.agents[host] = a
	w.t.Cleanup(func() {
		a.Close(context.Background())
		log.Close()
	})
	return a
}

func (w *world) stopAgent(host string) {
	w.t.Helper()
	require.NoError(w.t, w.agents[host].Close(context.Background()))
	delete(w.agents, host)
}

// vm folds web01 from the log.
func (w *world) vm() events.VM {
	w.t.Helper()
	recs, err := w.log.Load(w.ctx, events.VMAgg("web01"))
	require.NoError(w.t, err)
	return events.FoldVM(recs)
}

// waitVM waits until cond holds for web01, failing after d with what the
// VM looked like.
func (w *world) waitVM(d time.Duration, what string, cond func(events.VM) bool) events.VM {
	w.t.Helper()
	deadline := time.Now().Add(d)
	for {
		vm := w.vm()
		if cond(vm) {
			return vm
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: not within %s; vm state %s, points %d, images %v", what, d, vm.State, len(vm.RecoveryPoints), vm.Images)
		}
		time.Sleep(50 * time.Millisecond) // polling the log for the expected state
	}
}

func (w *world) nbdURL() string {
	return nbd.URL(hostsync.ExportName("web01", "d0"), filepath.Join(w.dirs["hv01"], "nbd.sock"))
}

func (w *world) sourceImage() string { return filepath.Join(w.dirs["hv01"], "vms", "web01", "d0.img") }

func (w *world) replicaImage() string {
	return filepath.Join(w.dirs["hv11"], "replicas", "web01", "d0.img")
}

// qemuIO runs qemu-io commands against the VM's disk over NBD.
func (w *world) qemuIO(cmds ...string) {
	w.t.Helper()
	args := []string{"-f", "raw"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	args = append(args, w.nbdURL())
	out, err := exec.Command("qemu-io", args...).CombinedOutput()
	require.NoError(w.t, err, "qemu-io %v: %s", cmds, out)
	require.NotContains(w.t, string(out), "error", "qemu-io %v: %s", cmds, out)
}

// latestPointAfter waits for a recovery point of a cycle closed after t.
func (w *world) latestPointAfter(t time.Time, d time.Duration) events.RecoveryPoint {
	w.t.Helper()
	vm := w.waitVM(d, "a recovery point after "+t.Format(time.StampMilli), func(vm events.VM) bool {
		rp, ok := vm.RecoveryPoint("latest")
		return ok && rp.Time.After(t)
	})
	rp, _ := vm.RecoveryPoint("latest")
	return rp
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// requireSameBytes compares two images, naming the first differing offset.
var requireSameBytes = cycletest.RequireSameBytes

func pattern(i int) string { return fmt.Sprintf("0x%02x", (i*37+11)%255+1) }

func (w *world) js() jetstreamAPI {
	w.t.Helper()
	js, err := natsjs.New(w.nc)
	require.NoError(w.t, err)
	return js
}

type jetstreamAPI = natsjs.JetStream
