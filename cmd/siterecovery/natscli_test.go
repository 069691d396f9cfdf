package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/controlplane"
	"github.com/siterecovery/siterecovery/cmd/siterecovery/pki"
	"github.com/siterecovery/siterecovery/handlers"
)

// The real `nats` CLI (natscli) against a control plane under mTLS, with
// the contexts auth init wrote: what docs/security.md and the README tell
// a user to run must work for the roles that should have it, and be
// refused, at once and readably, to the others.

// natsCLIVersion is the natscli release make test-deps installs.
const natsCLIVersion = "v0.5.0"

// natsCLIRunTimeout bounds every run of the CLI: none may hang.
const natsCLIRunTimeout = 30 * time.Second

// natsCLI runs the nats binary with a configuration directory of its own
// (no context of the machine's user is seen) and no NATS_* environment.
type natsCLI struct {
	t   *testing.T
	bin string
	env []string
	// configDir is its $XDG_CONFIG_HOME: contexts are installed in
	// configDir/nats/context.
	configDir string
}

// mustNATSCLI finds the nats CLI: in the cache directory make test-deps
// installs it to, else on PATH. Without it the test skips, unless
// SR_REQUIRE_NATS_CLI=1 (make test sets it) makes that a failure.
func mustNATSCLI(t *testing.T) *natsCLI {
	t.Helper()
	bin, cached := "", "$XDG_CACHE_HOME/siterecovery/bin/nats"
	if cache, err := os.UserCacheDir(); err == nil {
		if cached = filepath.Join(cache, "siterecovery", "bin", "nats"); isExecutable(cached) {
			bin = cached
		}
	}
	if bin == "" {
		bin, _ = exec.LookPath("nats")
	}
	if bin == "" {
		install := "no " + cached + " nor nats on PATH: make test-deps installs it (go install github.com/nats-io/natscli/nats@" + natsCLIVersion + ")"
		if os.Getenv("SR_REQUIRE_NATS_CLI") == "1" {
			t.Fatal("the nats CLI is not installed and SR_REQUIRE_NATS_CLI=1: " + install)
		}
		t.Skip("the nats CLI is not installed, " + install + "; SR_REQUIRE_NATS_CLI=1 makes this a failure")
	}
	if _, err := exec.LookPath("script"); err != nil {
		t.Fatal("script (util-linux, Debian's bsdutils) is needed to give nats stream view a terminal")
	}
	n := &natsCLI{t: t, bin: bin, configDir: t.TempDir()}
	n.env = []string{"XDG_CONFIG_HOME=" + n.configDir}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NATS_") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			n.env = append(n.env, kv)
		}
	}
	if out, err := exec.Command(bin, "--version").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != natsCLIVersion {
		t.Logf("nats CLI %s: version %q, the tests expect %s", bin, strings.TrimSpace(string(out)), natsCLIVersion)
	}
	return n
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// command is a run of the CLI with args, bounded by natsCLIRunTimeout.
func (n *natsCLI) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = n.env
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// run runs nats with args to its end and returns what it printed and
// whether it exited 0.
func (n *natsCLI) run(args ...string) (string, bool) {
	n.t.Helper()
	return n.exec(n.bin, args...)
}

// runTTY runs nats with args on a terminal (nats stream view pages and
// requires one), through script(1).
func (n *natsCLI) runTTY(args ...string) (string, bool) {
	n.t.Helper()
	line := shellQuote(n.bin)
	for _, a := range args {
		line += " " + shellQuote(a)
	}
	out, ok := n.exec("script", "-qec", line, "/dev/null")
	return strings.ReplaceAll(out, "\r\n", "\n"), ok
}

func (n *natsCLI) exec(name string, args ...string) (string, bool) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), natsCLIRunTimeout)
	defer cancel()
	cmd := n.command(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	require.NoError(n.t, ctx.Err(), "nats %q hangs: %s", args, out)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		require.NoError(n.t, err, "nats %q", args)
	}
	return string(out), err == nil
}

// natsProc is a nats command left running (nats sub), with its output.
type natsProc struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	mu     sync.Mutex
	out    bytes.Buffer
	done   chan struct{}
}

func (p *natsProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *natsProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// start runs nats with args in the background until it exits, the test
// ends or natsCLIRunTimeout passes.
func (n *natsCLI) start(args ...string) *natsProc {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), natsCLIRunTimeout)
	p := &natsProc{cancel: cancel, done: make(chan struct{})}
	p.cmd = n.command(ctx, n.bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	require.NoError(n.t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	n.t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

// waitOutput waits until the command printed want.
func (p *natsProc) waitOutput(t *testing.T, want string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(p.output(), want) }, 15*time.Second, 20*time.Millisecond,
		"nats printed no %q: %s", want, p.output())
}

// waitExit waits for the command's end and returns its output.
func (p *natsProc) waitExit(t *testing.T) string {
	t.Helper()
	select {
	case <-p.done:
		return p.output()
	case <-time.After(natsCLIRunTimeout):
		p.cancel()
		t.Fatalf("nats %q hangs: %s", p.cmd.Args, p.output())
		return ""
	}
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// freeLoopbackPort is a port nobody listens on now: the contexts name the
// server's URL before the server starts.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// mustNATSCLIWorld is a control plane under mTLS on a loopback port the
// contexts of its certificate directory name.
func mustNATSCLIWorld(t *testing.T) (*controlplane.ControlPlane, string) {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(freeLoopbackPort(t))
	dir := filepath.Join(t.TempDir(), "tls")
	var out, errOut bytes.Buffer
	require.Equal(t, exitOK, run([]string{"auth", "init", "--dir", dir, "--hosts", "hv01,hv02", "--nats-url", "nats://" + addr}, &out, &errOut), errOut.String())
	require.Contains(t, out.String(), "nats --context "+filepath.Join(dir, pki.ContextFile(pki.RoleViewer))+" stream view SR_EVENTS")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cp, err := controlplane.Open(ctx, controlplane.Config{Data: t.TempDir(), Listen: addr, HTTP: "127.0.0.1:0", TLSDir: dir}, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, cp.Close(ctx))
	})
	return cp, dir
}

// subscribed says whether some client holds a subscription to subject.
func subscribed(cp *controlplane.ControlPlane, subject string) bool {
	cz, err := cp.Server().Connz(&server.ConnzOptions{Subscriptions: true})
	if err != nil {
		return false
	}
	return slices.ContainsFunc(cz.Conns, func(c *server.ConnInfo) bool { return slices.Contains(c.Subs, subject) })
}

const denied = "Permissions Violation"

func TestNATSCLIOperatorContext(t *testing.T) {
	cli := mustNATSCLI(t)
	cp, dir := mustNATSCLIWorld(t)
	op := []string{"--context", filepath.Join(dir, pki.ContextFile(pki.RoleOperator))}
	args := func(a ...string) []string { return append(slices.Clone(op), a...) }

	out, ok := cli.run(args("req", "sr.cmd.site.register", `{"name":"primary"}`)...)
	require.True(t, ok, out)
	require.Contains(t, out, "site_registered", "the operator sends a command")
	require.NotContains(t, out, denied)

	sub := cli.start(args("sub", "sr.evt.>", "--count", "1")...)
	require.Eventually(t, func() bool { return subscribed(cp, "sr.evt.>") }, 15*time.Second, 20*time.Millisecond, "nats sub: %s", sub.output())
	out, ok = cli.run(args("req", "sr.cmd.site.register", `{"name":"dr"}`)...)
	require.True(t, ok, out)
	out = sub.waitExit(t)
	require.Contains(t, out, "sr.evt.site.dr.site_registered", "the operator follows sr.evt.>")
	require.NotContains(t, out, denied)

	out, ok = cli.runTTY(args("stream", "view", "SR_EVENTS")...)
	require.True(t, ok, out)
	require.Contains(t, out, "sr.evt.site.primary.site_registered", "the operator views the log")
	require.Contains(t, out, "sr.evt.site.dr.site_registered")
	require.NotContains(t, out, denied, "the pager's consumer and acks are allowed")

	mustStream(t, context.Background(), cp, "SR_DELTA_dr")
	out, _ = cli.run(args("consumer", "next", "SR_DELTA_dr", "sr-apply-web01", "--timeout", "2s")...)
	require.Contains(t, out, denied+` for Publish to "$JS.API.CONSUMER.`, "no pull from a delta stream")
	require.Contains(t, out, "SR_DELTA_dr.sr-apply-web01")
	out, _ = cli.run(args("consumer", "add", "SR_DELTA_dr", "peek", "--pull", "--defaults", "--timeout", "2s")...)
	require.Contains(t, out, denied+` for Publish to "$JS.API.CONSUMER.CREATE.SR_DELTA_dr.peek`, "no consumer on a delta stream")
}

func TestNATSCLIViewerContext(t *testing.T) {
	cli := mustNATSCLI(t)
	cp, dir := mustNATSCLIWorld(t)
	opRun(t, cp.URL(), dir, exitOK, "site", "register", "primary")

	// Installed and selected as auth init says: the README's commands then
	// run as written.
	ctxDir := filepath.Join(cli.configDir, "nats", "context")
	require.NoError(t, os.MkdirAll(ctxDir, 0o700))
	raw, err := os.ReadFile(filepath.Join(dir, pki.ContextFile(pki.RoleViewer)))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(ctxDir, pki.ContextName(pki.RoleViewer)+".json"), raw, 0o600))
	out, ok := cli.run("context", "select", pki.ContextName(pki.RoleViewer))
	require.True(t, ok, out)

	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	for _, c := range []string{"nats stream view SR_EVENTS", "nats sub 'sr.evt.vm.*.failover_completed'"} {
		require.Contains(t, string(readme), "`"+c+"`", "the README's commands are the ones run here")
	}
	out, ok = cli.runTTY("stream", "view", "SR_EVENTS")
	require.True(t, ok, out)
	require.Contains(t, out, "sr.evt.site.primary.site_registered", "the viewer views the log")
	require.NotContains(t, out, denied)
	sub := cli.start("sub", "sr.evt.vm.*.failover_completed")
	require.Eventually(t, func() bool { return subscribed(cp, "sr.evt.vm.*.failover_completed") }, 15*time.Second, 20*time.Millisecond, "nats sub: %s", sub.output())

	for _, c := range [][]string{
		{"stream", "info", "SR_EVENTS"}, {"stream", "subjects", "SR_EVENTS"}, {"stream", "ls"},
		{"micro", "ls"}, {"micro", "info", "siterecovery"},
	} {
		out, ok := cli.run(c...)
		require.True(t, ok, "nats %q: %s", c, out)
		require.NotContains(t, out, denied, "nats %q", c)
	}
	out, ok = cli.run("req", "sr.q.sites", "{}")
	require.True(t, ok, out)
	require.Contains(t, out, `"name":"primary"`, "the viewer runs a query")

	out, _ = cli.run("req", "sr.cmd.site.register", `{"name":"evil"}`, "--timeout", "2s")
	require.Contains(t, out, denied+` for Publish to "sr.cmd.site.register"`, "the viewer's command is refused")
	out, _ = cli.run("req", "sr.q.sites", "{}")
	require.NotContains(t, out, "evil")

	out, _ = cli.run("consumer", "next", "SR_EVENTS", handlers.AutomationConsumer, "--timeout", "2s")
	require.Contains(t, out, denied+` for Publish to "$JS.API.CONSUMER.MSG.NEXT.SR_EVENTS.`+handlers.AutomationConsumer+`"`, "nobody else pulls from the automation consumer")
}

func TestNATSCLIHostCertificate(t *testing.T) {
	cli := mustNATSCLI(t)
	cp, dir := mustNATSCLIWorld(t)
	cert, key := pki.CertPaths(dir, "hv01")
	host := []string{"--server", cp.URL(), "--tlscert", cert, "--tlskey", key, "--tlsca", filepath.Join(dir, pki.CAFile),
		"--inbox-prefix", pki.UserInbox(pki.RoleHost, "hv01")}
	for _, subject := range []string{"sr.agent.hv02.>", "sr.ack.hv02.*", pki.UserInbox(pki.RoleHost, "hv02") + ".>", "sr.delta.>", "sr.evt.>"} {
		sub := cli.start(append(slices.Clone(host), "sub", subject)...)
		sub.waitOutput(t, denied+` for Subscription to "`+subject+`"`)
		require.False(t, subscribed(cp, subject), "hv01 cannot read %s", subject)
	}
}
