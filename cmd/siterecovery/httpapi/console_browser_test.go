package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// The console in a real browser: headless Chromium (Debian's chromium),
// driven over the DevTools protocol with a small client (Runtime.evaluate
// of a few lines of JavaScript: read the DOM, click).

// chromiumPath finds the browser. Without it the browser tests skip, unless
// SR_REQUIRE_BROWSER=1 (make test sets it) makes that a failure.
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SR_REQUIRE_BROWSER") == "1" {
		t.Fatal("chromium not found and SR_REQUIRE_BROWSER=1 (apt-get install -y chromium)")
	}
	t.Skip("chromium not found: apt-get install -y chromium (SR_REQUIRE_BROWSER=1 makes this a failure)")
	return ""
}

// browser is a headless Chromium with one page, driven over CDP.
type browser struct {
	t      *testing.T
	ws     *websocket.Conn
	nextID int
}

var devToolsURL = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

// startBrowser starts Chromium on about:blank and connects to its page.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	cmd := exec.Command(chromiumPath(t), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(),
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // its own process group: the renderers too
		_ = cmd.Wait()
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := devToolsURL.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	var wsURL string
	select {
	case wsURL = <-found:
	case <-time.After(20 * time.Second):
		t.Fatal("chromium did not print its DevTools address within 20s")
	}
	return connectPage(t, wsURL)
}

// connectPage finds the page target of the browser at wsURL and connects.
func connectPage(t *testing.T, wsURL string) *browser {
	t.Helper()
	host := strings.SplitN(strings.TrimPrefix(wsURL, "ws://"), "/", 2)[0]
	res, err := http.Get("http://" + host + "/json/list")
	require.NoError(t, err)
	defer res.Body.Close()
	var targets []struct{ Type, WebSocketDebuggerURL string }
	require.NoError(t, json.NewDecoder(res.Body).Decode(&targets))
	for _, tg := range targets {
		if tg.Type == "page" {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ws, _, err := websocket.Dial(ctx, tg.WebSocketDebuggerURL, nil)
			require.NoError(t, err)
			ws.SetReadLimit(16 << 20)
			t.Cleanup(func() { ws.CloseNow() })
			return &browser{t: t, ws: ws}
		}
	}
	t.Fatalf("no page target among %+v", targets)
	return nil
}

// call sends a CDP command and returns its result, skipping events.
func (b *browser) call(method string, params any) json.RawMessage {
	b.t.Helper()
	b.nextID++
	id := b.nextID
	req, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	require.NoError(b.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(b.t, b.ws.Write(ctx, websocket.MessageText, req))
	for {
		_, raw, err := b.ws.Read(ctx)
		require.NoError(b.t, err, "CDP %s", method)
		var res struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct{ Message string }
		}
		require.NoError(b.t, json.Unmarshal(raw, &res))
		if res.ID != id {
			continue
		}
		require.Nil(b.t, res.Error, "CDP %s: %+v", method, res.Error)
		return res.Result
	}
}

// eval runs JavaScript in the page and returns its value as JSON.
func (b *browser) eval(expr string) json.RawMessage {
	b.t.Helper()
	raw := b.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true})
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct{ Description string }
		} `json:"exceptionDetails"`
	}
	require.NoError(b.t, json.Unmarshal(raw, &res))
	require.Nil(b.t, res.ExceptionDetails, "%s: %+v", expr, res.ExceptionDetails)
	return res.Result.Value
}

// evalString runs expr and returns its string value ("" for null).
func (b *browser) evalString(expr string) string {
	b.t.Helper()
	var s *string
	require.NoError(b.t, json.Unmarshal(b.eval(expr), &s))
	if s == nil {
		return ""
	}
	return *s
}

// waitFor polls expr until its string value is want.
func (b *browser) waitFor(expr, want string) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		if got = b.evalString(expr); got == want {
			return
		}
		time.Sleep(100 * time.Millisecond) // polling the page: there is nothing to wait on
	}
	b.t.Fatalf("%s: got %q, want %q within 20s\npage:\n%s", expr, got, want, b.evalString("document.body.innerText"))
}

// open loads url with a hook that records the page's script errors.
func (b *browser) open(url string) {
	b.t.Helper()
	b.call("Page.enable", map[string]any{})
	b.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 1500, "height": 1000, "deviceScaleFactor": 1, "mobile": false})
	b.call("Page.addScriptToEvaluateOnNewDocument", map[string]any{"source": `window.__srErrors = [];
		window.addEventListener('error', (e) => window.__srErrors.push(String(e.message)));
		window.addEventListener('unhandledrejection', (e) => window.__srErrors.push(String(e.reason)));`})
	b.call("Page.navigate", map[string]any{"url": url})
}

func (b *browser) requireNoScriptErrors() {
	b.t.Helper()
	require.Equal(b.t, "[]", b.evalString("JSON.stringify(window.__srErrors ?? 'the error hook did not run')"), "script errors in the console")
}

const (
	jsVMState   = `document.querySelector('tr.vm-row[data-vm="web01"] .state')?.textContent ?? null`
	jsVMButtons = `[...document.querySelectorAll('button[data-vm="web01"]')].map((b) => b.dataset.op).join(',')`
	jsVMJob     = `document.querySelector('#jobs tr[data-target="web01"] .op')?.textContent ?? null`
)

// TestBrowserConsoleShowsVMAndRunsAnAction opens the console, sees the VM
// and its state, runs the one allowed operation (enable) through its
// confirmation dialog, sees the job appear, sees the VM become Protected
// through the live stream alone, then sees a refused command's error.
func TestBrowserConsoleShowsVMAndRunsAnAction(t *testing.T) {
	b := startBrowser(t)
	f := mustOpenHTTPControlPlane(t)
	f.buildFabric()
	f.post("plan/create", map[string]any{"name": "shop", "groups": []map[string]any{{"vms": []string{"web01"}}}})
	b.open(f.base + "/")

	b.waitFor(jsVMState, "Unprotected")
	b.waitFor(`document.querySelector('#plans tr[data-plan="shop"]')?.innerText.includes('web01') ? 'yes' : 'no'`, "yes")
	require.Equal(t, "enable", b.evalString(jsVMButtons), "only the allowed operations have buttons")
	b.waitFor(`document.querySelector('#hosts tr[data-host="hv11"]')?.innerText.includes('secondary') ? 'yes' : 'no'`, "yes")
	b.waitFor(`document.getElementById('live').textContent`, "live")

	b.eval(`document.querySelector('button[data-vm="web01"][data-op="enable"]').click()`)
	b.waitFor(`document.getElementById('confirm').open ? 'open' : 'closed'`, "open")
	require.Contains(t, b.evalString(`document.getElementById('confirm-title').textContent`), "web01")
	b.eval(`document.getElementById('confirm-ok').click()`)

	b.waitFor(jsVMJob, "EnableProtection")
	b.waitFor(jsVMState, "EnablingProtection")
	var jobs []struct{ ID, Operation, State string }
	f.get("jobs?vm=web01", &jobs)
	require.Len(t, jobs, 1, "one click, one job")
	require.Equal(t, "EnableProtection", jobs[0].Operation)
	b.waitFor(`document.querySelector('#jobs tr[data-target="web01"]')?.dataset.job ?? null`, jobs[0].ID)

	// No reload: the stream brings the initial replication and the point.
	f.replicate("web01", jobs[0].ID, 4096, 1024, 30*time.Second)
	b.waitFor(jsVMState, "Protected")
	b.waitFor(`document.querySelector('#jobs tr[data-target="web01"]')?.dataset.state ?? null`, "Succeeded")
	b.waitFor(`String(document.querySelectorAll('tr.vm-row[data-vm="web01"] .timeline .tick').length)`, "1")
	b.waitFor(`[...document.querySelectorAll('#events tbody tr')].some((r) => r.innerText.includes('recovery_point_created')) ? 'yes' : 'no'`, "yes")
	require.Equal(t, "disable,pause,test_failover,planned_failover,unplanned_failover",
		b.evalString(jsVMButtons), "the buttons follow allowed_operations")
	b.screenshot()

	// A refusal is shown and appends nothing: the dialog is open on pause
	// when another operator pauses the VM behind the page's back.
	b.eval(`document.querySelector('button[data-vm="web01"][data-op="pause"]').click()`)
	b.waitFor(`document.getElementById('confirm').open ? 'open' : 'closed'`, "open")
	f.post("vm/pause", map[string]any{"vm": "web01"})
	before := f.lastSeq()
	b.eval(`document.getElementById('confirm-ok').click()`)
	b.waitFor(`document.querySelector('#toasts .toast.err')?.textContent.includes('invalid_state') ? 'yes' : 'no'`, "yes")
	b.waitFor(jsVMState, "Paused")
	require.Equal(t, "disable,resume,unplanned_failover", b.evalString(jsVMButtons))
	require.Equal(t, before, f.lastSeq(), "the refused command appended nothing")
	b.requireNoScriptErrors()
}

// screenshot saves the page as a PNG at $SR_CONSOLE_SCREENSHOT, if set
// (for the docs and for looking at the console without a browser).
func (b *browser) screenshot() {
	b.t.Helper()
	path := os.Getenv("SR_CONSOLE_SCREENSHOT")
	if path == "" {
		return
	}
	raw := b.call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true})
	var res struct{ Data []byte }
	require.NoError(b.t, json.Unmarshal(raw, &res))
	require.NoError(b.t, os.WriteFile(path, res.Data, 0o644))
}

// TestConsoleServesAssets: the console's files are served, with types, and
// nothing in them points outside the machine.
func TestConsoleServesAssets(t *testing.T) {
	f := mustOpenHTTPControlPlane(t)
	for path, ctype := range map[string]string{"/": "text/html", "/app.js": "text/javascript", "/app.css": "text/css"} {
		res, err := http.Get(f.base + path)
		require.NoError(t, err)
		raw, err := io.ReadAll(res.Body)
		res.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode, path)
		require.Contains(t, res.Header.Get("Content-Type"), ctype, path)
		require.NotRegexp(t, `https?://`, string(raw), "%s loads nothing from elsewhere", path)
	}
	status, _ := f.do(http.MethodGet, "/nothing-here", "")
	require.Equal(t, http.StatusNotFound, status)
	status, _ = f.do(http.MethodPost, "/", "{}")
	require.Equal(t, http.StatusMethodNotAllowed, status)
}
