package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
)

// Helpers of the fault tests: `siterecovery agent` subprocesses, a control
// plane client over raw NATS requests, and a writer that writes through an
// agent's NBD export with qemu-io while keeping a model of the disk.

// lockedBuffer collects a subprocess's output; it is read while written.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// agentProc is a running `siterecovery agent`.
type agentProc struct {
	t    testing.TB
	host string
	data string
	cmd  *exec.Cmd
	logs *lockedBuffer
	done chan error
}

// startAgent runs the agent of host on data against the NATS server at
// url. It is killed when the test ends; its log is printed if the test
// failed.
func startAgent(t testing.TB, url, host, data string) *agentProc {
	t.Helper()
	a := &agentProc{t: t, host: host, data: data, logs: &lockedBuffer{}, done: make(chan error, 1)}
	a.cmd = exec.Command(binary, "agent", "--host", host, "--nats", url, "--data", data, "--log-level", "info")
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	require.NoError(t, a.cmd.Start())
	go func() { a.done <- a.cmd.Wait() }()
	t.Cleanup(func() {
		a.resume()
		a.kill()
		if t.Failed() {
			t.Logf("agent %s log:\n%s", host, a.logs)
		}
	})
	return a
}

// exited reports whether the process has ended.
func (a *agentProc) exited() bool {
	select {
	case err := <-a.done:
		a.done <- err
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and reaps the process.
func (a *agentProc) kill() {
	if a.exited() {
		return
	}
	_ = a.cmd.Process.Kill()
	select {
	case err := <-a.done:
		a.done <- err
	case <-time.After(10 * time.Second):
		a.t.Errorf("agent %s did not die on SIGKILL", a.host)
	}
}

// pause stops the process (SIGSTOP): its connections stay open and say
// nothing, as a host cut off from the network.
func (a *agentProc) pause() {
	a.t.Helper()
	require.NoError(a.t, a.cmd.Process.Signal(syscall.SIGSTOP))
}

// resume continues a paused process (SIGCONT).
func (a *agentProc) resume() {
	if !a.exited() {
		_ = a.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// shortDir is a temporary directory whose path leaves room for the
// agent's NBD Unix socket (at most 108 bytes).
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "srf")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func needQEMU(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-io"); err != nil {
		t.Skip("qemu-io missing: make test-deps (Debian qemu-utils)")
	}
}

// plane sends commands and queries to the control plane over raw NATS.
type plane struct {
	t  testing.TB
	nc *nats.Conn
}

func newPlane(t testing.TB, url string) *plane {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return &plane{t: t, nc: nc}
}

// request sends body to subject and returns the reply's error code (""
// on success) and the reply; err is a transport error (no reply).
func (p *plane) request(subject string, body any, timeout time.Duration) (string, []byte, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return "", nil, err
	}
	msg, err := p.nc.Request(subject, data, timeout)
	if err != nil {
		return "", nil, err
	}
	if !bytes.HasPrefix(bytes.TrimSpace(msg.Data), []byte("{")) {
		return "", msg.Data, nil // a list: a query's answer
	}
	var re replyError
	if err := json.Unmarshal(msg.Data, &re); err != nil {
		return "", msg.Data, fmt.Errorf("reply %q: %w", msg.Data, err)
	}
	if re.Error != nil {
		return re.Error.Code, msg.Data, nil
	}
	return "", msg.Data, nil
}

// must sends a command or query that must succeed and returns the reply.
func (p *plane) must(subject string, body any) []byte {
	p.t.Helper()
	code, reply, err := p.request(subject, body, 15*time.Second)
	require.NoError(p.t, err, subject)
	require.Empty(p.t, code, "%s: %s", subject, reply)
	return reply
}

type obj = map[string]any

// vmView is the part of `vm show --json` (sr.q.vm) the fault tests read.
type vmView struct {
	ProtectionState string   `json:"protection_state"`
	Health          string   `json:"health"`
	RPOSeconds      *int64   `json:"rpo_seconds"`
	Issues          []string `json:"issues"`
	RecoveryPoints  []struct {
		ID   string    `json:"id"`
		Time time.Time `json:"time"`
	} `json:"recovery_points"`
	Disks []struct {
		Name         string `json:"name"`
		Image        string `json:"image"`
		ReplicaImage string `json:"replica_image"`
		NBDURL       string `json:"nbd_url"`
	} `json:"disks"`
	LastError *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"last_error"`
}

// vm queries one VM; ok is false when the control plane did not answer.
func (p *plane) vm(name string) (vmView, bool) {
	p.t.Helper()
	var v vmView
	code, reply, err := p.request("sr.q.vm", obj{"vm": name}, 5*time.Second)
	if err != nil || code != "" {
		return v, false
	}
	require.NoError(p.t, json.Unmarshal(reply, &v), "vm view %s", reply)
	return v, true
}

// waitVM polls the VM until cond holds, failing after d with the last view.
func (p *plane) waitVM(name string, d time.Duration, what string, cond func(vmView) bool) vmView {
	p.t.Helper()
	deadline := time.Now().Add(d)
	var last vmView
	for {
		v, ok := p.vm(name)
		if ok {
			if cond(v) {
				return v
			}
			last = v
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: not within %s; last view: state %s health %s rpo %v points %d error %+v", what, d,
				last.ProtectionState, last.Health, last.RPOSeconds, len(last.RecoveryPoints), last.LastError)
		}
		time.Sleep(100 * time.Millisecond) // polling the read model with a deadline
	}
}

// pointCycle is the cycle of a recovery point ID (rp-<epoch>-<cycle>).
func pointCycle(t testing.TB, id string) uint64 {
	t.Helper()
	parts := strings.Split(id, "-")
	require.Len(t, parts, 3, "recovery point id %q", id)
	n, err := strconv.ParseUint(parts[2], 10, 64)
	require.NoError(t, err, "recovery point id %q", id)
	return n
}

// latestPoint is the newest recovery point of a view (ok false if none).
func (v vmView) latestPoint() (id string, at time.Time, ok bool) {
	for _, rp := range v.RecoveryPoints {
		if !ok || rp.Time.After(at) {
			id, at, ok = rp.ID, rp.Time, true
		}
	}
	return id, at, ok
}

// pointAfter reports whether the VM has a recovery point closed after t.
func pointAfter(t time.Time) func(vmView) bool {
	return func(v vmView) bool {
		_, at, ok := v.latestPoint()
		return ok && at.After(t)
	}
}

// requireNoGap checks that the VM's recovery point cycles run without a
// hole from the first to the last, and returns them.
func requireNoGap(t testing.TB, v vmView) []uint64 {
	t.Helper()
	seen := map[uint64]bool{}
	var lo, hi uint64
	for i, rp := range v.RecoveryPoints {
		c := pointCycle(t, rp.ID)
		require.False(t, seen[c], "point of cycle %d listed twice", c)
		seen[c] = true
		if i == 0 || c < lo {
			lo = c
		}
		hi = max(hi, c)
	}
	var missing []uint64
	for c := lo; c <= hi; c++ {
		if !seen[c] {
			missing = append(missing, c)
		}
	}
	require.Empty(t, missing, "recovery points missing between cycles %d and %d", lo, hi)
	out := make([]uint64, 0, len(seen))
	for c := lo; c <= hi; c++ {
		out = append(out, c)
	}
	return out
}

// envKnownBugs, when set, makes the fault tests also assert behaviour
// the project wants and the product does not have yet (each such check
// names the missing piece).
const envKnownBugs = "SR_FAULT_KNOWN_BUGS"
