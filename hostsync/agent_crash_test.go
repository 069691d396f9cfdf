package hostsync_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
	"github.com/siterecovery/siterecovery/hostsync"
	"github.com/siterecovery/siterecovery/hostsync/replica"
)

// Crash tests run an agent as a child process (this test binary, running
// TestAgentChildProcess) and kill it with SIGKILL: nothing of the agent's
// shutdown runs, exactly as kill -9.

const (
	envChild      = "SR_AGENT_CHILD"
	envChildHost  = "SR_AGENT_CHILD_HOST"
	envChildDir   = "SR_AGENT_CHILD_DIR"
	envChildNATS  = "SR_AGENT_CHILD_NATS"
	envChildCrash = "SR_AGENT_CHILD_CRASH_STAGE"
	crashTrigger  = "crash-now"
)

// TestAgentChildProcess is the child's body; it is skipped in a normal run.
// With a crash stage, the child kills itself at that stage of an apply once
// the file crash-now exists in its data directory.
func TestAgentChildProcess(t *testing.T) {
	if os.Getenv(envChild) == "" {
		t.Skip("runs only as the child of a crash test")
	}
	dir := os.Getenv(envChildDir)
	nc := jstest.MustConnect(t, os.Getenv(envChildNATS))
	log, err := jetstream.Open(context.Background(), nc, jetstream.Config{})
	require.NoError(t, err)
	cfg := hostsync.AgentConfig{
		Host: os.Getenv(envChildHost), DataDir: dir, Transport: transport(t, nc), Log: log,
		HeartbeatEvery: time.Second, IRChunk: irChunk, ResendAfter: 2 * time.Second, DiskBootID: "test-boot",
	}
	if stage := os.Getenv(envChildCrash); stage != "" {
		cfg.ReplicaHook = func(vm, s string) error {
			if _, err := os.Stat(filepath.Join(dir, crashTrigger)); err == nil && s == stage {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
			return nil
		}
	}
	a, err := hostsync.NewAgent(cfg)
	require.NoError(t, err)
	require.NoError(t, a.Open(context.Background()))
	time.Sleep(60 * time.Second) // the parent kills the child long before
}

// startChild runs host's agent in a child process.
func (w *world) startChild(host, crashStage string) *exec.Cmd {
	w.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestAgentChildProcess$", "-test.v")
	cmd.Env = append(os.Environ(), envChild+"=1", envChildHost+"="+host, envChildDir+"="+w.dirs[host],
		envChildNATS+"="+w.srv.ClientURL(), envChildCrash+"="+crashStage)
	if os.Getenv("SR_TEST_LOG") != "" {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	require.NoError(w.t, cmd.Start())
	w.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// waitExit waits for a child to die, failing after d.
func waitExit(t *testing.T, cmd *exec.Cmd, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.Error(t, err, "the child was killed, not ended")
	case <-time.After(d):
		t.Fatalf("child %d did not die within %s", cmd.Process.Pid, d)
	}
}

// protectWithChild is protect with one host's agent in a child process.
func protectWithChild(t *testing.T, childHost, crashStage string) (*world, *exec.Cmd) {
	w := mustWorld(t)
	w.fabric(nil)
	var child *exec.Cmd
	for _, h := range []string{"hv01", "hv11"} {
		if h == childHost {
			child = w.startChild(h, crashStage)
		} else {
			w.startAgent(h)
		}
	}
	w.waitVM(15*time.Second, "source disk served", func(vm events.VM) bool {
		for _, im := range vm.Images["d0"] {
			if im.Role == events.DiskRoleSource && im.NBDURL != "" {
				return true
			}
		}
		return false
	})
	w.qemuIO("write -P 0x11 0 1M")
	w.cmd("sr.cmd.vm.enable", m{"vm": "web01"})
	w.waitVM(15*time.Second, "protected with a point", func(vm events.VM) bool {
		return vm.State == events.Protected && len(vm.RecoveryPoints) > 0
	})
	return w, child
}

func TestAgentRecoveryHostKilledDuringApply(t *testing.T) {
	w, child := protectWithChild(t, "hv11", replica.StageImageWritten)
	require.NoError(t, os.WriteFile(filepath.Join(w.dirs["hv11"], crashTrigger), nil, 0o600))
	w.qemuIO("write -P 0x77 2M 512k", "write -P 0x78 6M 4k")
	written := time.Now()
	waitExit(t, child, 10*time.Second)
	require.NoError(t, os.Remove(filepath.Join(w.dirs["hv11"], crashTrigger)))

	// The restarted recovery host opens its replica at a retained point
	// and gets the cycle again from the stream: nothing is lost.
	w.startAgent("hv11")
	w.latestPointAfter(written, 15*time.Second)
	requireSameBytes(t, readFile(t, w.sourceImage()), readFile(t, w.replicaImage()), "replica after the crash")
}

func TestAgentSourceKilledAfterAcknowledgedWrites(t *testing.T) {
	w, child := protectWithChild(t, "hv01", "")
	w.qemuIO("write -P 0x88 3M 256k", "write -P 0x89 7M 64k", "flush")
	written := time.Now()
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	waitExit(t, child, 5*time.Second)
	want := readFile(t, w.sourceImage())

	// The restarted source recovers its change log and ships what was
	// acknowledged: the replica ends equal to the disk.
	w.startAgent("hv01")
	w.latestPointAfter(written, 15*time.Second)
	requireSameBytes(t, want, readFile(t, w.replicaImage()), "replica after the source crashed")
	require.NotEqual(t, events.ResyncRequiredState, w.vm().State)
}

func TestAgentSourceHostRebootNeedsResync(t *testing.T) {
	w, child := protectWithChild(t, "hv01", "")
	w.qemuIO("write -P 0x5a 4M 64k")
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	waitExit(t, child, 5*time.Second)
	// After a reboot the writes of the page cache may be lost with the
	// log's tail: the change log cannot be trusted and the VM must say so.
	w.startAgent("hv01", func(c *hostsync.AgentConfig) { c.DiskBootID = "after-reboot" })
	w.waitVM(10*time.Second, "resync required", func(vm events.VM) bool { return vm.State == events.ResyncRequiredState })
}
