package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/controlplane"
	"github.com/siterecovery/siterecovery/cmd/siterecovery/httpapi"
)

// httpFixture is a real control plane (embedded NATS with JetStream, the
// log, the projections, the service) with its HTTP endpoint, and an NATS
// connection of its own for what agents would send.
type httpFixture struct {
	t    *testing.T
	cp   *controlplane.ControlPlane
	base string
	nc   *nats.Conn
	seq  uint64 // the last command's seq: get reads its writes
}

func mustOpenHTTPControlPlane(t *testing.T) *httpFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cp, err := controlplane.Open(ctx, controlplane.Config{Data: t.TempDir(), Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0"}, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, cp.Close(ctx), "control plane closes cleanly (event streams included)")
	})
	nc, err := nats.Connect(cp.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return &httpFixture{t: t, cp: cp, base: "http://" + cp.HTTPAddr().String(), nc: nc}
}

// do sends an HTTP request and returns the status and the body.
func (f *httpFixture) do(method, path, body string) (int, []byte) {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.base+path, rd)
	require.NoError(f.t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(f.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(f.t, err)
	return res.StatusCode, raw
}

// post runs a command that must succeed and returns its result.
func (f *httpFixture) post(path string, body any) map[string]any {
	f.t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(f.t, err)
	status, out := f.do(http.MethodPost, "/api/v1/"+path, string(raw))
	require.Equal(f.t, http.StatusOK, status, "POST %s %s: %s", path, raw, out)
	var res map[string]any
	require.NoError(f.t, json.Unmarshal(out, &res))
	if seq, ok := res["seq"].(float64); ok {
		f.seq = max(f.seq, uint64(seq))
	}
	return res
}

// get runs a query that must succeed, after the read models applied the
// last command, and decodes its answer into v.
func (f *httpFixture) get(path string, v any) {
	f.t.Helper()
	if path != "" {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + "after_seq=" + seqText(f.seq)
	}
	status, out := f.do(http.MethodGet, "/api/v1/"+path, "")
	require.Equal(f.t, http.StatusOK, status, "GET %s: %s", path, out)
	require.NoError(f.t, json.Unmarshal(out, v), "GET %s: %s", path, out)
}

// seqText writes a log sequence as the API and the stream do.
func seqText(seq uint64) string { return strconv.FormatUint(seq, 10) }

func (f *httpFixture) lastSeq() uint64 {
	seq, err := f.cp.Log().LastSeq(context.Background())
	require.NoError(f.t, err)
	return seq
}

// buildFabric builds two sites, a paired cloud each, a policy and the VM
// web01, all through the API.
func (f *httpFixture) buildFabric() {
	f.post("site/register", map[string]any{"name": "primary"})
	f.post("site/register", map[string]any{"name": "secondary"})
	f.post("host/register", map[string]any{"name": "hv01", "site": "primary"})
	f.post("host/register", map[string]any{"name": "hv02", "site": "primary"})
	f.post("host/register", map[string]any{"name": "hv11", "site": "secondary"})
	f.post("cloud/create", map[string]any{"name": "gold", "site": "primary", "hosts": []string{"hv01"}})
	f.post("cloud/add-host", map[string]any{"name": "gold", "host": "hv02"}) // CLI spelling of add_host
	f.post("cloud/create", map[string]any{"name": "gold-dr", "site": "secondary", "hosts": []string{"hv11"}})
	f.post("policy/create", map[string]any{"name": "p30", "copy_frequency": "30s", "retention": "24h"})
	f.post("pairing/create", map[string]any{"source": "gold", "target": "gold-dr", "policy": "p30"})
	f.post("vm/create", map[string]any{"name": "web01", "host": "hv01", "disk": []string{"1GiB"}})
}

// apiVM is the part of the vm query the tests read.
type apiVM struct {
	Name              string   `json:"name"`
	Host              string   `json:"host"`
	ProtectionState   string   `json:"protection_state"`
	RecoveryHost      string   `json:"recovery_host"`
	AllowedOperations []string `json:"allowed_operations"`
	RPOSeconds        *int64   `json:"rpo_seconds"`
}

func TestHTTPAPIRoundTrip(t *testing.T) {
	f := mustOpenHTTPControlPlane(t)
	f.buildFabric()

	var vm apiVM
	f.get("vm?vm=web01", &vm)
	require.Equal(t, apiVM{Name: "web01", Host: "hv01", ProtectionState: "Unprotected", AllowedOperations: []string{"enable"}}, vm)

	res := f.post("vm/enable", map[string]any{"vm": "web01", "command_id": "enable-web01"})
	require.NotEmpty(t, res["job"])
	f.get("vm?vm=web01", &vm)
	require.Equal(t, "EnablingProtection", vm.ProtectionState)
	require.Equal(t, "hv11", vm.RecoveryHost)

	again := f.post("vm/enable", map[string]any{"vm": "web01", "command_id": "enable-web01"})
	require.Equal(t, true, again["duplicate"], "a retried command appends nothing")

	var vms []apiVM
	f.get("vms", &vms)
	require.Len(t, vms, 1)
	var jobs []struct {
		ID, Operation, Target string
	}
	f.get("jobs?vm=web01&limit=10", &jobs)
	require.Len(t, jobs, 1)
	require.Equal(t, res["job"], jobs[0].ID)
	require.Equal(t, "EnableProtection", jobs[0].Operation)
	var job struct{ ID string }
	f.get("job?job="+jobs[0].ID, &job)
	require.Equal(t, jobs[0].ID, job.ID)
	var hist []struct{ Type string }
	f.get("events?kind=vm&id=web01", &hist)
	require.Equal(t, "vm_created", hist[0].Type)
	var status struct {
		Sites int `json:"sites"`
		Hosts struct{ Total int }
	}
	f.get("status", &status)
	require.Equal(t, 2, status.Sites)
	require.Equal(t, 3, status.Hosts.Total)
	var index struct{ Commands, Queries []string }
	f.get("", &index)
	require.Contains(t, index.Commands, "vm/planned_failover")
	require.NotContains(t, strings.Join(index.Commands, " "), "agent")
	require.Contains(t, index.Queries, "vms")
}

func TestHTTPAPIErrors(t *testing.T) {
	f := mustOpenHTTPControlPlane(t)
	f.buildFabric()
	before := f.lastSeq()
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"bad JSON", "POST", "/api/v1/vm/enable", `{"vm":`, 400, "invalid_argument"},
		{"not an object", "POST", "/api/v1/vm/enable", `["web01"]`, 400, "invalid_argument"},
		{"null body", "POST", "/api/v1/vm/enable", `null`, 400, "invalid_argument"},
		{"unknown field", "POST", "/api/v1/vm/enable", `{"vm":"web01","bogus":1}`, 400, "invalid_argument"},
		{"bad token", "POST", "/api/v1/site/register", `{"name":"no spaces"}`, 400, "invalid_argument"},
		{"unknown verb", "POST", "/api/v1/vm/fly", `{"vm":"web01"}`, 404, "not_found"},
		{"agent reports not forwarded", "POST", "/api/v1/agent.hv01/heartbeat", `{}`, 404, "not_found"},
		{"unknown noun", "POST", "/api/v1/dog/create", `{}`, 404, "not_found"},
		{"unknown query", "GET", "/api/v1/nothing", "", 404, "not_found"},
		{"unknown VM", "GET", "/api/v1/vm?vm=ghost", "", 404, "not_found"},
		{"unknown job", "GET", "/api/v1/job?job=ghost", "", 404, "not_found"},
		{"missing param", "GET", "/api/v1/vm", "", 400, "invalid_argument"},
		{"unknown param", "GET", "/api/v1/vms?color=red", "", 400, "invalid_argument"},
		{"param twice", "GET", "/api/v1/vm?vm=a&vm=b", "", 400, "invalid_argument"},
		{"limit not a number", "GET", "/api/v1/jobs?limit=ten", "", 400, "invalid_argument"},
		{"bad query string", "GET", "/api/v1/vms?%zz", "", 400, "invalid_argument"},
		{"state refuses", "POST", "/api/v1/vm/planned_failover", `{"vm":"web01"}`, 409, "invalid_state"},
		{"exists", "POST", "/api/v1/site/register", `{"name":"primary"}`, 409, "already_exists"},
		{"unknown VM command", "POST", "/api/v1/vm/enable", `{"vm":"ghost"}`, 404, "not_found"},
		{"too large", "POST", "/api/v1/site/register", `{"name":"` + strings.Repeat("a", httpapi.MaxBody) + `"}`, 413, "too_large"},
		{"query with POST", "POST", "/api/v1/vms", `{}`, 405, "method_not_allowed"},
		{"command with GET", "GET", "/api/v1/vm/enable", "", 405, "method_not_allowed"},
		{"command with PUT", "PUT", "/api/v1/vm/enable", `{}`, 405, "method_not_allowed"},
		{"deeper path", "GET", "/api/v1/vm/enable/now", "", 404, "not_found"},
		{"other version", "GET", "/api/v2/vms", "", 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, raw := f.do(c.method, c.path, c.body)
			require.Equal(t, c.status, status, "%s", raw)
			var body struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			require.NoError(t, json.Unmarshal(raw, &body), "%s", raw)
			require.Equal(t, c.code, body.Error.Code, "%s", raw)
			require.NotEmpty(t, body.Error.Message)
		})
	}
	require.Equal(t, before, f.lastSeq(), "refused requests append nothing")
}

func TestHTTPAPIStateMessageNamesAllowedOperations(t *testing.T) {
	f := mustOpenHTTPControlPlane(t)
	f.buildFabric()
	status, raw := f.do("POST", "/api/v1/vm/commit", `{"vm":"web01"}`)
	require.Equal(t, http.StatusConflict, status)
	require.Contains(t, string(raw), "Unprotected")
	require.Contains(t, string(raw), "enable")
}

func TestHTTPHealthzAndUnavailable(t *testing.T) {
	f := mustOpenHTTPControlPlane(t)
	status, raw := f.do("GET", "/healthz", "")
	require.Equal(t, http.StatusOK, status, "%s", raw)

	// With the service stopped, a forwarded request has no responder: 503.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, f.cp.Service().Close(ctx))
	status, raw = f.do("POST", "/api/v1/site/register", `{"name":"primary"}`)
	require.Equal(t, http.StatusServiceUnavailable, status, "%s", raw)
	require.Contains(t, string(raw), `"code":"unavailable"`)
	require.Zero(t, f.lastSeq())
}

// sendAgent sends an agent's report over NATS, as hostsync's agent does.
func (f *httpFixture) sendAgent(host, verb string, report any) {
	f.t.Helper()
	raw, err := json.Marshal(report)
	require.NoError(f.t, err)
	msg, err := f.nc.Request("sr.cmd.agent."+host+"."+verb, raw, 10*time.Second)
	require.NoError(f.t, err)
	require.Empty(f.t, msg.Header.Get("Nats-Service-Error-Code"), "%s %s: %s", host, verb, msg.Data)
	require.False(f.t, bytes.Contains(msg.Data, []byte(`"error"`)), "%s %s: %s", host, verb, msg.Data)
}
