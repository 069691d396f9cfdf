package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/controlplane"
	"github.com/siterecovery/siterecovery/cmd/siterecovery/httpapi"
	"github.com/siterecovery/siterecovery/cmd/siterecovery/pki"
	"github.com/siterecovery/siterecovery/handlers"
)

// mustAuthDir writes a certificate directory for hosts hv01 and hv02.
func mustAuthDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	var out, errOut bytes.Buffer
	require.Equal(t, exitOK, run([]string{"auth", "init", "--dir", dir, "--hosts", "hv01,hv02"}, &out, &errOut), errOut.String())
	return dir
}

// mustOpenTLSControlPlane runs serve --tls-dir dir with an embedded server
// and HTTPS on random loopback ports.
func mustOpenTLSControlPlane(t *testing.T, dir string) *controlplane.ControlPlane {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cp, err := controlplane.Open(ctx, controlplane.Config{Data: t.TempDir(), Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", TLSDir: dir}, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, cp.Close(ctx))
	})
	return cp
}

// permConn is a client of the certificate name that records the
// permission violations the server reports.
type permConn struct {
	*nats.Conn
	violations chan error
}

func mustConnectAs(t *testing.T, url, dir, name string) *permConn {
	t.Helper()
	opts, err := pki.NATSOptions(dir, name)
	require.NoError(t, err)
	pc := &permConn{violations: make(chan error, 16)}
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			select {
			case pc.violations <- err:
			default:
			}
		}
	}))
	pc.Conn, err = nats.Connect(url, opts...)
	require.NoError(t, err)
	t.Cleanup(pc.Close)
	return pc
}

// requireViolation waits for the server's permission violation on subject.
func (pc *permConn) requireViolation(t *testing.T, subject string) {
	t.Helper()
	select {
	case err := <-pc.violations:
		require.Contains(t, err.Error(), subject)
	case <-time.After(5 * time.Second):
		t.Fatalf("no permissions violation for %s", subject)
	}
}

func TestAuthInitWritesCertificates(t *testing.T) {
	dir := mustAuthDir(t)
	for _, name := range []string{"ca", "server", "hv01", "hv02", "operator", "viewer", "control"} {
		cert, key := pki.CertPaths(dir, name)
		_, err := tls.LoadX509KeyPair(cert, key)
		require.NoError(t, err, name)
		st, err := os.Stat(key)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), key)
	}
	for _, role := range pki.HTTPRoles {
		st, err := os.Stat(filepath.Join(dir, role+pki.TokenSuffix))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	}
	for _, role := range pki.ContextRoles {
		raw, err := os.ReadFile(filepath.Join(dir, pki.ContextFile(role)))
		require.NoError(t, err)
		var c pki.NATSContext
		require.NoError(t, json.Unmarshal(raw, &c))
		cert, key := pki.CertPaths(dir, role)
		require.Equal(t, pki.NATSContext{Description: c.Description, URL: "nats://127.0.0.1:4222", Cert: cert, Key: key,
			CA: filepath.Join(dir, pki.CAFile), InboxPrefix: pki.UserInbox(role, role)}, c, "the nats CLI context of %s", role)
		require.True(t, filepath.IsAbs(c.Cert), "the CLI resolves relative paths against its working directory")
	}
	certs, err := pki.ScanClientCerts(dir)
	require.NoError(t, err)
	require.Equal(t, []pki.ClientCert{{Role: pki.RoleControl, Name: "control"}, {Role: pki.RoleHost, Name: "hv01"}, {Role: pki.RoleHost, Name: "hv02"}, {Role: pki.RoleOperator, Name: "operator"}, {Role: pki.RoleViewer, Name: "viewer"}}, certs)

	before, err := os.ReadFile(filepath.Join(dir, pki.CAFile))
	require.NoError(t, err)
	var out, errOut bytes.Buffer
	require.Equal(t, exitRefused, run([]string{"auth", "init", "--dir", dir, "--hosts", "hv03"}, &out, &errOut))
	require.Contains(t, errOut.String(), "--force")
	after, err := os.ReadFile(filepath.Join(dir, pki.CAFile))
	require.NoError(t, err)
	require.Equal(t, before, after, "a refused init changes nothing")
	_, err = os.Stat(filepath.Join(dir, "hv03.pem"))
	require.ErrorIs(t, err, os.ErrNotExist)
	require.Equal(t, exitOK, run([]string{"auth", "init", "--dir", dir, "--hosts", "hv03", "--force"}, &out, &errOut), errOut.String())
}

func TestAuthInitUsage(t *testing.T) {
	for _, args := range [][]string{
		{"auth"}, {"auth", "rotate"},
		{"auth", "init", "--hosts", "hv01"},                                   // no --dir
		{"auth", "init", "--dir", t.TempDir()},                                // no --hosts
		{"auth", "init", "--dir", t.TempDir(), "--hosts", "bad host"},         // not a name
		{"auth", "init", "--dir", t.TempDir(), "--hosts", "server"},           // reserved
		{"auth", "init", "--dir", t.TempDir(), "--hosts", "hv01,hv01"},        // repeated
		{"auth", "init", "--dir", t.TempDir(), "--hosts", "h", "--days", "0"}, // days
		{"auth", "init", "--dir", t.TempDir(), "--hosts", "h", "--nats-url", "http://cp:4222"},
	} {
		var out, errOut bytes.Buffer
		require.Equal(t, exitUsage, run(args, &out, &errOut), "%q", args)
		require.NotEmpty(t, errOut.String())
	}
}

func TestSecurityHostPermissions(t *testing.T) {
	dir := mustAuthDir(t)
	cp := mustOpenTLSControlPlane(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opRun(t, cp.URL(), dir, exitOK, "site", "register", "dr")
	js := mustStream(t, ctx, cp, "SR_DELTA_dr")

	hv01 := mustConnectAs(t, cp.URL(), dir, "hv01")
	hjs, err := natsjs.New(hv01.Conn)
	require.NoError(t, err)
	_, err = hjs.Publish(ctx, "sr.delta.dr.hv01.web01.1", []byte("own batch"))
	require.NoError(t, err, "a host publishes its own delta subject")

	pubCtx, pubCancel := context.WithTimeout(ctx, time.Second)
	defer pubCancel()
	_, err = hjs.Publish(pubCtx, "sr.delta.dr.hv02.web01.1", []byte("forged batch"))
	require.Error(t, err, "no ack for another host's delta subject")
	hv01.requireViolation(t, "sr.delta.dr.hv02.web01.1")
	st, err := js.Stream(ctx, "SR_DELTA_dr")
	require.NoError(t, err)
	require.Equal(t, uint64(1), st.CachedInfo().State.Msgs, "only the host's own batch is stored")

	last, err := cp.Log().LastSeq(ctx)
	require.NoError(t, err)
	evtCtx, evtCancel := context.WithTimeout(ctx, time.Second)
	defer evtCancel()
	_, err = hjs.Publish(evtCtx, "sr.evt.vm.web01.failover_started", []byte(`{}`))
	require.Error(t, err, "a host cannot write the event log")
	hv01.requireViolation(t, "sr.evt.vm.web01.failover_started")
	now, err := cp.Log().LastSeq(ctx)
	require.NoError(t, err)
	require.Equal(t, last, now)

	_, err = hv01.Request("sr.cmd.site.register", []byte(`{"name":"evil"}`), 500*time.Millisecond)
	require.Error(t, err, "a host cannot run operator commands")
	hv01.requireViolation(t, "sr.cmd.site.register")

	_, err = hv01.Request("sr.cmd.agent.hv02.heartbeat", []byte(`{}`), 500*time.Millisecond)
	require.Error(t, err, "a host cannot report for another")
	hv01.requireViolation(t, "sr.cmd.agent.hv02.heartbeat")

	hv02 := mustConnectAs(t, cp.URL(), dir, "hv02")
	leaves, err := hv02.Subscribe("sr.agent.hv02.leaves.web01", func(m *nats.Msg) { _ = m.Respond([]byte(`{"leaves":[]}`)) })
	require.NoError(t, err)
	require.NoError(t, hv02.Flush())
	defer leaves.Unsubscribe()
	reply, err := hv01.Request("sr.agent.hv02.leaves.web01", []byte(`{}`), 5*time.Second)
	require.NoError(t, err, "a host asks another for hash-tree leaves and gets the answer")
	require.JSONEq(t, `{"leaves":[]}`, string(reply.Data))

	// sr.evt.> too: an event carries the reply subject of the control
	// plane's append, which allow_responses would let a host answer.
	for _, subject := range []string{"sr.delta.>", pki.UserInbox(pki.RoleHost, "hv02") + ".>", "sr.ack.hv02.*", "sr.agent.hv02.>", "sr.evt.>"} {
		_, err = hv01.SubscribeSync(subject)
		require.NoError(t, err) // refused asynchronously
		hv01.requireViolation(t, subject)
	}

	reply, err = hv01.Request("sr.cmd.agent.hv01.heartbeat", []byte(`{}`), 5*time.Second)
	require.NoError(t, err, "a host reports for itself")
	require.NotEmpty(t, reply.Data)
}

// mustStream waits until the control plane has made the stream.
func mustStream(t *testing.T, ctx context.Context, cp *controlplane.ControlPlane, name string) natsjs.JetStream {
	t.Helper()
	js, err := natsjs.New(cp.Conn())
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := js.Stream(ctx, name)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "the control plane creates %s", name)
	return js
}

// opRun runs an operator command over mTLS and checks its exit status.
func opRun(t *testing.T, url, dir string, want int, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append(args, "--nats", url, "--tls-dir", dir, "--timeout", "2s")
	require.Equal(t, want, run(args, &out, &errOut), "%q: %s", args, errOut.String())
	return out.String() + errOut.String()
}

func TestSecurityNoCertificateRefused(t *testing.T) {
	dir := mustAuthDir(t)
	cp := mustOpenTLSControlPlane(t, dir)
	_, err := nats.Connect(cp.URL(), nats.MaxReconnects(0))
	require.Error(t, err, "a client without TLS is refused")
	pool, err := pki.LoadCAPool(dir)
	require.NoError(t, err)
	_, err = nats.Connect(cp.URL(), nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}), nats.MaxReconnects(0))
	require.Error(t, err, "a TLS client without a certificate is refused")

	other := mustAuthDir(t) // another CA: its certificates are not trusted
	opts, err := pki.NATSOptions(other, "operator")
	require.NoError(t, err)
	opts[0] = nats.Secure(&tls.Config{RootCAs: pool, Certificates: mustClientCert(t, other, "operator"), MinVersion: tls.VersionTLS12})
	_, err = nats.Connect(cp.URL(), append(opts, nats.MaxReconnects(0))...)
	require.Error(t, err, "a certificate of another CA is refused")

	var out, errOut bytes.Buffer
	require.Equal(t, exitRefused, run([]string{"status", "--nats", cp.URL(), "--timeout", "2s"}, &out, &errOut), "the CLI without --tls-dir is refused")
}

func mustClientCert(t *testing.T, dir, name string) []tls.Certificate {
	t.Helper()
	cert, key := pki.CertPaths(dir, name)
	pair, err := tls.LoadX509KeyPair(cert, key)
	require.NoError(t, err)
	return []tls.Certificate{pair}
}

func TestSecurityViewerQueriesOperatorCommands(t *testing.T) {
	dir := mustAuthDir(t)
	cp := mustOpenTLSControlPlane(t, dir)

	viewer := mustConnectAs(t, cp.URL(), dir, "viewer")
	_, err := viewer.Request("sr.cmd.site.register", []byte(`{"name":"primary"}`), 500*time.Millisecond)
	require.Error(t, err, "the viewer cannot command")
	viewer.requireViolation(t, "sr.cmd.site.register")
	reply, err := viewer.Request("sr.q.sites", []byte(`{}`), 5*time.Second)
	require.NoError(t, err, "the viewer queries")
	require.NotContains(t, string(reply.Data), `"error"`)

	start := time.Now()
	out := opRun(t, cp.URL(), dir, exitRefused, "site", "register", "primary", "--tls-cert", "viewer")
	require.Contains(t, out, `error: unauthorized: certificate "viewer" (role viewer) may not publish to sr.cmd.site.register: that needs the operator certificate (--tls-cert operator)`)
	require.Contains(t, out, `Permissions Violation for Publish to "sr.cmd.site.register"`, "and the server's words")
	require.Less(t, time.Since(start), time.Second, "refused at once, not after --timeout")
	out = opRun(t, cp.URL(), dir, exitRefused, "status", "--tls-cert", "hv01")
	require.Contains(t, out, `certificate "hv01" (role host) may not publish to sr.q.status: that needs the operator certificate (--tls-cert operator) or the viewer certificate (--tls-cert viewer)`)
	out = opRun(t, cp.URL(), dir, exitRefused, "events", "--follow", "--tls-cert", "hv01")
	require.Contains(t, out, `certificate "hv01" (role host) may not subscribe to sr.evt.>: that needs the operator certificate`, "a refused follow ends")
	require.Less(t, time.Since(start), 2*time.Second, "refused at once, not after --timeout")
	followed := make(chan string, 1)
	go func() {
		var o, e bytes.Buffer
		run([]string{"events", "--follow", "--count", "1", "--nats", cp.URL(), "--tls-dir", dir, "--tls-cert", "viewer"}, &o, &e)
		followed <- o.String() + e.String()
	}()
	require.Eventually(t, func() bool { return cliSubscribed(cp, "sr.evt.>") }, 10*time.Second, 20*time.Millisecond)
	opRun(t, cp.URL(), dir, exitOK, "site", "register", "primary")
	select {
	case got := <-followed:
		require.Contains(t, got, "site_registered", "the viewer follows the log with events --follow")
	case <-time.After(10 * time.Second):
		t.Fatal("events --follow printed nothing")
	}
	out = opRun(t, cp.URL(), dir, exitOK, "status", "--json", "--tls-cert", "viewer")
	require.Contains(t, out, "sites")

	var o, e bytes.Buffer
	require.Equal(t, exitUsage, run([]string{"status", "--nats", cp.URL(), "--tls-cert", "viewer"}, &o, &e), "--tls-cert needs --tls-dir")

	// The viewer reads the log with an ordered consumer, as events --follow does.
	js, err := natsjs.New(viewer.Conn)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, "SR_EVENTS", natsjs.OrderedConsumerConfig{FilterSubjects: []string{"sr.evt.>"}})
	require.NoError(t, err)
	msg, err := cons.Next(natsjs.FetchMaxWait(5 * time.Second))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(msg.Subject(), "sr.evt.site.primary."), msg.Subject())
}

// TestSecurityAutomationConsumer: the automation runners' durable
// consumer on SR_EVENTS is the control plane's alone, though every other
// user may make and use consumers of its own there.
func TestSecurityAutomationConsumer(t *testing.T) {
	dir := mustAuthDir(t)
	cp := mustOpenTLSControlPlane(t, dir)
	name := handlers.AutomationConsumer
	require.Equal(t, name, pki.AutomationConsumer, "the permissions deny the consumer the runners use")
	for _, user := range []string{"viewer", "operator", "hv01"} {
		pc := mustConnectAs(t, cp.URL(), dir, user)
		for _, subject := range []string{
			"$JS.API.CONSUMER.MSG.NEXT.SR_EVENTS." + name,
			"$JS.API.CONSUMER.DELETE.SR_EVENTS." + name,
			"$JS.API.CONSUMER.CREATE.SR_EVENTS." + name + ".sr.evt.>",
			"$JS.API.CONSUMER.CREATE.SR_EVENTS." + name,
			"$JS.ACK.SR_EVENTS." + name + ".1.1.1.1.0",
			"$JS.ACK.hub.acc.SR_EVENTS." + name + ".1.1.1.1.0.x",
		} {
			require.NoError(t, pc.Publish(subject, []byte(`{}`)))
			pc.requireViolation(t, subject)
		}
		reply, err := pc.Request("$JS.API.CONSUMER.INFO.SR_EVENTS."+name, nil, 5*time.Second)
		require.NoError(t, err, "%s reads the consumer's info", user)
		require.Contains(t, string(reply.Data), `"name":"`+name+`"`)
	}
	js, err := natsjs.New(cp.Conn())
	require.NoError(t, err)
	_, err = js.Consumer(context.Background(), "SR_EVENTS", name)
	require.NoError(t, err, "the consumer is still there")
}

func TestSecurityAgentEndToEnd(t *testing.T) {
	dir := mustAuthDir(t)
	cp := mustOpenTLSControlPlane(t, dir)
	opRun(t, cp.URL(), dir, exitOK, "site", "register", "primary")
	opRun(t, cp.URL(), dir, exitOK, "host", "register", "hv01", "--site", "primary")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- agentMain(ctx, agentConfig{Host: "hv01", NATSURL: cp.URL(), Data: t.TempDir(), TLSDir: dir}, zerolog.Nop())
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool {
		res, err := cp.Store().Query(context.Background(), "hosts", nil)
		if err != nil {
			return false
		}
		raw, _ := json.Marshal(res)
		var hosts []struct {
			Name      string `json:"name"`
			Reachable bool   `json:"reachable"`
		}
		return json.Unmarshal(raw, &hosts) == nil && len(hosts) == 1 && hosts[0].Reachable
	}, 20*time.Second, 50*time.Millisecond, "the agent's heartbeats over mTLS make hv01 reachable")
}

func TestSecurityHTTPTokens(t *testing.T) {
	dir := mustAuthDir(t)
	cp := mustOpenTLSControlPlane(t, dir)
	pool, err := pki.LoadCAPool(dir)
	require.NoError(t, err)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	base := "https://" + cp.HTTPAddr().String()
	token := func(role string) string {
		raw, err := os.ReadFile(filepath.Join(dir, role+pki.TokenSuffix))
		require.NoError(t, err)
		return strings.TrimSpace(string(raw))
	}
	do := func(method, path, tok, body string) (int, string) {
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		require.NoError(t, err)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res.StatusCode, string(b)
	}
	status, body := do("GET", "/api/v1/sites", "", "")
	require.Equal(t, http.StatusUnauthorized, status)
	require.Contains(t, body, `"code":"unauthorized"`)
	status, _ = do("GET", "/api/v1/sites", "0123456789abcdef0123456789abcdef", "")
	require.Equal(t, http.StatusUnauthorized, status, "a wrong token")
	status, _ = do("GET", "/metrics", "", "")
	require.Equal(t, http.StatusUnauthorized, status)
	status, _ = do("GET", "/metrics", token(pki.RoleViewer), "")
	require.Equal(t, http.StatusOK, status)
	status, body = do("POST", "/api/v1/site/register", token(pki.RoleViewer), `{"name":"primary"}`)
	require.Equal(t, http.StatusForbidden, status, body)
	status, body = do("POST", "/api/v1/site/register", token(pki.RoleOperator), `{"name":"primary"}`)
	require.Equal(t, http.StatusOK, status, body)
	status, body = do("GET", "/api/v1/sites", token(pki.RoleViewer), "")
	require.Equal(t, http.StatusOK, status, body)
	status, _ = do("GET", "/", "", "")
	require.Equal(t, http.StatusOK, status, "the console's page itself is public")

	// The console signs in once; its calls then carry the cookie.
	res, err := client.PostForm(base+"/login", map[string][]string{"token": {token(pki.RoleViewer)}})
	require.NoError(t, err)
	res.Body.Close()
	var cookie *http.Cookie
	for _, c := range res.Request.Response.Cookies() {
		if c.Name == httpapi.TokenCookie {
			cookie = c
		}
	}
	require.NotNil(t, cookie, "login sets the token cookie")
	require.True(t, cookie.HttpOnly && cookie.Secure)
	req, err := http.NewRequest("GET", base+"/api/v1/sites", nil)
	require.NoError(t, err)
	req.AddCookie(cookie)
	res, err = client.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
}

// TestSecurityReplicationOverTLS runs two agents with their certificates:
// the VM's initial replication crosses the delta stream the control plane
// made, through the recovery host's consumer, and a recovery point comes
// back, all within the hosts' permissions.
func TestSecurityReplicationOverTLS(t *testing.T) {
	dir := mustAuthDir(t)
	cp := mustOpenTLSControlPlane(t, dir)
	for _, args := range [][]string{
		{"site", "register", "primary"}, {"site", "register", "dr"},
		{"host", "register", "hv01", "--site", "primary"}, {"host", "register", "hv02", "--site", "dr"},
		{"cloud", "create", "gold", "--site", "primary", "--hosts", "hv01"},
		{"cloud", "create", "gold-dr", "--site", "dr", "--hosts", "hv02"},
		{"policy", "create", "p1", "--copy-frequency", "1s", "--retention", "1h"},
		{"pairing", "create", "--source", "gold", "--target", "gold-dr", "--policy", "p1"},
		{"vm", "create", "web01", "--host", "hv01", "--disk", "1MiB"},
	} {
		opRun(t, cp.URL(), dir, exitOK, args...)
	}
	for _, h := range []string{"hv01", "hv02"} {
		runTLSAgent(t, cp, dir, h)
	}
	opRun(t, cp.URL(), dir, exitOK, "vm", "enable", "web01")
	require.Eventually(t, func() bool {
		state, points := vmState(cp)
		return state == "Protected" && points > 0
	}, 45*time.Second, 100*time.Millisecond, "web01 replicates over mTLS to a recovery point")
	opRun(t, cp.URL(), dir, exitOK, "vm", "disable", "web01")
	require.Eventually(t, func() bool {
		state, _ := vmState(cp)
		return state == "Unprotected"
	}, 30*time.Second, 100*time.Millisecond, "the recovery host drops its consumer and purges its batches")
}

// vmState is web01's protection state and number of recovery points.
func vmState(cp *controlplane.ControlPlane) (string, int) {
	res, err := cp.Store().Query(context.Background(), "vm", json.RawMessage(`{"vm":"web01"}`))
	if err != nil {
		return "", 0
	}
	raw, _ := json.Marshal(res)
	var vm struct {
		State  string            `json:"protection_state"`
		Points []json.RawMessage `json:"recovery_points"`
	}
	if json.Unmarshal(raw, &vm) != nil {
		return "", 0
	}
	return vm.State, len(vm.Points)
}

// runTLSAgent runs host's agent with its certificate until the test ends.
func runTLSAgent(t *testing.T, cp *controlplane.ControlPlane, dir, host string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- agentMain(ctx, agentConfig{Host: host, NATSURL: cp.URL(), Data: t.TempDir(), TLSDir: dir}, zerolog.Nop())
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// cliSubscribed says whether a CLI connection holds a subscription to subject.
func cliSubscribed(cp *controlplane.ControlPlane, subject string) bool {
	cz, err := cp.Server().Connz(&server.ConnzOptions{Subscriptions: true})
	if err != nil {
		return false
	}
	for _, c := range cz.Conns {
		if c.Name == "siterecovery-cli" && slices.Contains(c.Subs, subject) {
			return true
		}
	}
	return false
}

func TestTLSDirFlagsAndBadDirs(t *testing.T) {
	t.Setenv(pki.EnvTLSDir, "/from/env")
	cfg, err := parseServe(nil, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "/from/env", cfg.TLSDir, "SR_TLS_DIR is the default of --tls-dir")
	cfg, err = parseServe([]string{"--failover-timeout", "90s"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, 90*time.Second, cfg.FailoverTimeout)
	_, err = parseServe([]string{"--failover-timeout", "-1s"}, io.Discard)
	require.ErrorContains(t, err, "must not be negative")
	acfg, err := parseAgent([]string{"--host", "hv01", "--tls-dir", "/x"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "/x", acfg.TLSDir)

	empty := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = controlplane.Open(ctx, controlplane.Config{Data: t.TempDir(), Listen: "127.0.0.1:0", TLSDir: empty}, zerolog.Nop())
	require.ErrorContains(t, err, pki.CAFile, "serve refuses a directory without a CA")

	dir := mustAuthDir(t)
	require.NoError(t, os.Remove(filepath.Join(dir, "control.pem")))
	_, err = controlplane.Open(ctx, controlplane.Config{Data: t.TempDir(), Listen: "127.0.0.1:0", TLSDir: dir}, zerolog.Nop())
	require.ErrorContains(t, err, "no control certificate")

	err = agentMain(ctx, agentConfig{Host: "hv09", NATSURL: "nats://127.0.0.1:1", Data: t.TempDir(), TLSDir: dir}, zerolog.Nop())
	require.ErrorContains(t, err, `certificate "hv09"`, "an agent without its certificate does not start")

	other := mustAuthDir(t)
	data, err := os.ReadFile(filepath.Join(other, "hv01.pem"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "intruder.pem"), data, 0o644))
	_, err = pki.ServerAuth(dir)
	require.ErrorContains(t, err, "intruder.pem", "a certificate of another CA in the directory is refused")
}

func TestAuthInitContextURL(t *testing.T) {
	require.Equal(t, "nats://cp.example.net:4222", pki.InitConfig{ServerNames: []string{"cp.example.net", "10.0.0.5"}}.ContextURL())
	require.Equal(t, "nats://[::1]:4222", pki.InitConfig{ServerNames: []string{"::1"}}.ContextURL())
	require.Equal(t, "tls://cp:7422", pki.InitConfig{NATSURL: "tls://cp:7422"}.ContextURL())
}
