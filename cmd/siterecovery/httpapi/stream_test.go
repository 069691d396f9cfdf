package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// sseMessage is one server-sent event as a client parses it.
type sseMessage struct {
	ID, Event, Data string
}

// openSSE connects to the event stream and returns its messages; the
// connection closes when the test ends.
func (f *httpFixture) openSSE(path string, header http.Header) <-chan sseMessage {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f.t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.base+path, nil)
	require.NoError(f.t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(f.t, err)
	require.Equal(f.t, http.StatusOK, res.StatusCode)
	require.Equal(f.t, "text/event-stream", res.Header.Get("Content-Type"))
	out := make(chan sseMessage, 64)
	go func() {
		defer res.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(res.Body)
		var m sseMessage
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if m.Data != "" {
					out <- m
				}
				m = sseMessage{}
			case strings.HasPrefix(line, "id: "):
				m.ID = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				m.Event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				m.Data += strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return out
}

// nextSSE waits for the next message.
func nextSSE(t *testing.T, ch <-chan sseMessage) sseMessage {
	t.Helper()
	select {
	case m, ok := <-ch:
		require.True(t, ok, "event stream closed")
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no event on the stream within 10s")
	}
	return sseMessage{}
}

func TestSSEStreamsEventsAfterCommands(t *testing.T) {
	f := mustOpenHTTPControlPlane(t)
	f.post("site/register", map[string]any{"name": "primary"})
	stream := f.openSSE("/api/v1/stream", nil)
	ready := nextSSE(t, stream)
	require.Equal(t, "ready", ready.Event)
	require.JSONEq(t, `{"from":2}`, ready.Data, "the stream starts after the last event")

	res := f.post("site/register", map[string]any{"name": "secondary"})
	m := nextSSE(t, stream)
	require.Equal(t, "", m.Event, "a plain message: EventSource.onmessage gets it")
	var ev struct {
		Seq     uint64          `json:"seq"`
		Subject string          `json:"subject"`
		Kind    string          `json:"kind"`
		ID      string          `json:"id"`
		Type    string          `json:"type"`
		Command string          `json:"command_id"`
		Data    json.RawMessage `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(m.Data), &ev))
	require.Equal(t, uint64(res["seq"].(float64)), ev.Seq)
	require.Equal(t, seqText(ev.Seq), m.ID, "the SSE id is the sequence: a reconnect resumes after it")
	require.Equal(t, "sr.evt.site.secondary.site_registered", ev.Subject)
	require.Equal(t, "site", ev.Kind)
	require.Equal(t, "secondary", ev.ID)
	require.Equal(t, "site_registered", ev.Type)
	require.Equal(t, res["command_id"], ev.Command)
	require.Contains(t, string(ev.Data), `"secondary"`)

	// A reconnecting EventSource sends Last-Event-ID: nothing is missed.
	resumed := f.openSSE("/api/v1/stream", http.Header{"Last-Event-Id": {"0"}})
	require.JSONEq(t, `{"from":1}`, nextSSE(t, resumed).Data)
	require.Equal(t, "1", nextSSE(t, resumed).ID)
	require.Equal(t, "2", nextSSE(t, resumed).ID)
	from := f.openSSE("/api/v1/stream?from=2", nil)
	nextSSE(t, from)
	require.Equal(t, "2", nextSSE(t, from).ID)
}

func TestSSEBadStart(t *testing.T) {
	f := mustOpenHTTPControlPlane(t)
	for _, path := range []string{"/api/v1/stream?from=x", "/api/v1/stream?from=0"} {
		status, raw := f.do("GET", path, "")
		require.Equal(t, http.StatusBadRequest, status, "%s", raw)
		require.Contains(t, string(raw), "invalid_argument")
	}
	req, err := http.NewRequest("GET", f.base+"/api/v1/stream", nil)
	require.NoError(t, err)
	req.Header.Set("Last-Event-ID", "abc")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusBadRequest, res.StatusCode)
}

// TestSSEStreamsEndOnClose: an open stream does not hold up the control
// plane's shutdown (Close in the fixture's cleanup must succeed quickly).
func TestSSEStreamsEndOnClose(t *testing.T) {
	f := mustOpenHTTPControlPlane(t)
	stream := f.openSSE("/api/v1/stream", nil)
	require.Equal(t, "ready", nextSSE(t, stream).Event)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, f.cp.Close(ctx))
	require.Less(t, time.Since(start), 4*time.Second)
	select {
	case _, ok := <-stream:
		require.False(t, ok, "the stream ends")
	case <-time.After(5 * time.Second):
		t.Fatal("the stream is still open after Close")
	}
}

// TestSSEAndMetricsSkipUndecodableEvent: a message on the log that is not
// an event (written by anyone who may publish on sr.evt.>) is reported on
// the stream as an error naming its sequence and counted as invalid; what
// follows it still arrives.
func TestSSEAndMetricsSkipUndecodableEvent(t *testing.T) {
	f := mustOpenHTTPControlPlane(t)
	f.post("site/register", map[string]any{"name": "primary"})
	stream := f.openSSE("/api/v1/stream", nil)
	require.Equal(t, "ready", nextSSE(t, stream).Event)

	js, err := jetstream.New(f.nc)
	require.NoError(t, err)
	ack, err := js.Publish(context.Background(), "sr.evt.site.primary.site_registered", []byte("not an event"))
	require.NoError(t, err)
	f.post("site/register", map[string]any{"name": "secondary"})

	bad := nextSSE(t, stream)
	require.Equal(t, "error", bad.Event)
	require.Equal(t, seqText(ack.Sequence), bad.ID)
	require.Contains(t, bad.Data, `"seq":`+seqText(ack.Sequence))
	next := nextSSE(t, stream)
	require.Equal(t, "", next.Event)
	require.Contains(t, next.Data, `"id":"secondary"`)

	text := f.scrape()
	for series, want := range map[string]float64{
		`siterecovery_events_appended_total{type="invalid"}`:         1,
		`siterecovery_events_appended_total{type="site_registered"}`: 2,
	} {
		got, ok := metricValue(text, series)
		require.True(t, ok, "%s missing", series)
		require.Equal(t, want, got, series)
	}
}
