package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

// scrape reads /metrics.
func (f *httpFixture) scrape() string {
	f.t.Helper()
	status, raw := f.do(http.MethodGet, "/metrics", "")
	require.Equal(f.t, http.StatusOK, status, "%s", raw)
	return string(raw)
}

// metricValue is the value of the sample line starting with series
// (name{labels} as Prometheus writes it), or false.
func metricValue(text, series string) (float64, bool) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// replicate appends what the agents' reports produce for an enabled VM
// (initial replication, then a recovery point taken age ago), as the
// handlers would, under the enable job's correlation id.
func (f *httpFixture) replicate(vm, job string, sent, pointBytes int64, age time.Duration) {
	f.t.Helper()
	ctx := context.Background()
	agg := events.VMAgg(vm)
	recs, err := f.cp.Log().Load(ctx, agg)
	require.NoError(f.t, err)
	meta := events.Meta{At: time.Now(), CommandID: "test-ir-" + vm, CorrelationID: job, Actor: "agent:hv11"}
	res, err := f.cp.Log().Append(ctx, agg, recs[len(recs)-1].Seq, meta,
		events.InitialReplicationStartedData{TotalBytes: sent},
		events.InitialReplicationCompletedData{SentBytes: sent})
	require.NoError(f.t, err)
	meta.CommandID, meta.CorrelationID = "test-rp-"+vm, ""
	res, err = f.cp.Log().Append(ctx, agg, res.Last(), meta,
		events.RecoveryPointCreatedData{ID: "p1", Time: time.Now().Add(-age), Cycle: 1, Epoch: 1, Bytes: pointBytes})
	require.NoError(f.t, err)
	f.seq = res.Last()
}

func TestMetricsExposeStateAndCounts(t *testing.T) {
	f := mustOpenHTTPControlPlane(t)
	f.buildFabric()
	job := f.post("vm/enable", map[string]any{"vm": "web01"})["job"].(string)
	f.replicate("web01", job, 4096, 1024, 90*time.Second)
	var vm apiVM
	f.get("vm?vm=web01", &vm)
	require.Equal(t, "Protected", vm.ProtectionState)

	text := f.scrape()
	want := map[string]float64{
		`siterecovery_vm_protection_state{state="Protected",vm="web01"}`:                                     1,
		`siterecovery_vm_protection_state{state="Unprotected",vm="web01"}`:                                   0,
		`siterecovery_vm_replication_health{health="Normal",vm="web01"}`:                                     1,
		`siterecovery_replication_bytes_total{vm="web01"}`:                                                   4096 + 1024,
		`siterecovery_events_appended_total{type="site_registered"}`:                                         2,
		`siterecovery_events_appended_total{type="host_registered"}`:                                         3,
		`siterecovery_events_appended_total{type="recovery_point_created"}`:                                  1,
		`siterecovery_log_last_sequence`:                                                                     float64(f.seq),
		`siterecovery_projection_lag_events`:                                                                 0,
		`siterecovery_job_duration_seconds_count{operation="EnableProtection",state="Succeeded"}`:            1,
		`siterecovery_job_duration_seconds_bucket{operation="EnableProtection",state="Succeeded",le="+Inf"}`: 1,
	}
	for series, v := range want {
		got, ok := metricValue(text, series)
		require.True(t, ok, "%s missing from:\n%s", series, text)
		require.Equal(t, v, got, series)
	}
	_, ok := metricValue(text, `siterecovery_host_reachable{host="hv01",site="primary"}`)
	require.False(t, ok, "hv01 never heartbeated: its reachability is unknown, no 0 to alert on")
	rpo, ok := metricValue(text, `siterecovery_vm_rpo_seconds{vm="web01"}`)
	require.True(t, ok)
	require.GreaterOrEqual(t, rpo, 90.0)
	require.Less(t, rpo, 150.0)
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "promhttp_metric_handler_requests_total"} {
		require.Contains(t, text, "\n"+name, "standard collectors are registered")
	}

	// The next scrape counts only what was appended since, and counts it.
	f.post("site/register", map[string]any{"name": "witness"})
	text = f.scrape()
	got, _ := metricValue(text, `siterecovery_events_appended_total{type="site_registered"}`)
	require.Equal(t, 3.0, got)
	total := 0.0
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "siterecovery_events_appended_total{") {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			require.NoError(t, err)
			total += v
		}
	}
	require.Equal(t, float64(f.lastSeq()), total, "every event of the log is counted once")
}

func TestMetricsProjectionLagAndConcurrentScrapes(t *testing.T) {
	f := mustOpenHTTPControlPlane(t)
	f.buildFabric()
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			status, raw := f.do(http.MethodGet, "/metrics", "")
			if status != http.StatusOK || !strings.Contains(string(raw), "siterecovery_events_appended_total") {
				errs <- fmt.Errorf("scrape: %d", status)
				return
			}
			errs <- nil
		}()
	}
	for range 4 {
		require.NoError(t, <-errs)
	}
	text := f.scrape()
	got, _ := metricValue(text, `siterecovery_events_appended_total{type="site_registered"}`)
	require.Equal(t, 2.0, got, "concurrent scrapes count each event once")
	lag, ok := metricValue(text, "siterecovery_projection_lag_events")
	require.True(t, ok)
	require.GreaterOrEqual(t, lag, 0.0)
}
