package test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// binary is the siterecovery binary built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	if cfg := os.Getenv(natsChildEnv); cfg != "" {
		os.Exit(runNATSChild(cfg))
	}
	dir, err := os.MkdirTemp("", "siterecovery-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "siterecovery")
	build := exec.Command("go", "build", "-race", "-o", binary, "../cmd/siterecovery")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build siterecovery:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// serveProc is a running `siterecovery serve`.
type serveProc struct {
	t    testing.TB
	cmd  *exec.Cmd
	data string
	port int
	http int
	logs *bytes.Buffer
	done chan error
}

// startServe runs serve on data with a fresh port pair and waits until its
// HTTP health check answers.
func startServe(t testing.TB, data string, port int) *serveProc {
	t.Helper()
	p := &serveProc{t: t, data: data, port: port, http: freePort(t), logs: &bytes.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(binary, "serve", "--data", data,
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--http", fmt.Sprintf("127.0.0.1:%d", p.http), "--log-level", "warn")
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	require.NoError(t, p.cmd.Start())
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.kill() })
	require.Eventually(t, p.healthy, 30*time.Second, 50*time.Millisecond, "serve did not become healthy:\n%s", p.logs)
	return p
}

func (p *serveProc) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", p.port) }

func (p *serveProc) healthy() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return false
	default:
	}
	c := exec.Command("curl", "-sf", fmt.Sprintf("http://127.0.0.1:%d/healthz", p.http))
	if _, err := exec.LookPath("curl"); err != nil {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.http), time.Second)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}
	return c.Run() == nil
}

// stop sends SIGTERM and waits for a clean exit.
func (p *serveProc) stop() {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		p.done <- err
		require.NoError(p.t, err, "serve exit:\n%s", p.logs)
	case <-time.After(30 * time.Second):
		p.t.Fatalf("serve did not stop on SIGTERM:\n%s", p.logs)
	}
}

// kill sends SIGKILL (a crash) and reaps the process.
func (p *serveProc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Kill()
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(10 * time.Second):
	}
}

// cliResult is one operator command's outcome.
type cliResult struct {
	code           int
	stdout, stderr string
}

// cli runs an operator command against the given control plane, bounded
// by 30 s.
func cli(t testing.TB, url string, args ...string) cliResult {
	t.Helper()
	return cliAt(t, 30*time.Second, url, args...)
}

// cliAt runs an operator command with its default timeouts, bounded by d.
func cliAt(t testing.TB, d time.Duration, url string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out, errb strings.Builder
	c := exec.CommandContext(ctx, binary, append(args, "--nats", url)...)
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		require.True(t, ok, "run %v: %v", args, err)
		code = ee.ExitCode()
	}
	return cliResult{code: code, stdout: out.String(), stderr: errb.String()}
}

// mustCLI runs a command that must succeed and returns its stdout.
func mustCLI(t testing.TB, url string, args ...string) string {
	t.Helper()
	r := cli(t, url, args...)
	require.Equal(t, 0, r.code, "siterecovery %s: %s%s", strings.Join(args, " "), r.stdout, r.stderr)
	return r.stdout
}
