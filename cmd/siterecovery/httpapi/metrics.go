package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/projections"
)

// /metrics: everything is read at scrape time, so nothing runs between
// scrapes. The gauges come from the read models (store.Query); the counters
// of the log (events by type, replication bytes by VM) from the log itself,
// each scrape reading only the events appended since the one before (the
// first reads the whole log, so the counts are those of the log, not of
// this process's life).

// jobDurationBuckets are the upper bounds, in seconds, of the job duration
// histogram: from a pause (about a second) to a large initial replication.
var jobDurationBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200}

// metricsJobsLimit is how many of the newest jobs the job duration
// histogram covers (the jobs query's largest limit).
const metricsJobsLimit = 10000

// metricsReadBatch is how many events a scrape reads from the log at once.
const metricsReadBatch = 1024

// invalidEventType labels events_appended_total for stored messages the
// log cannot decode.
const invalidEventType = "invalid"

func metricDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("siterecovery_"+name, help, labels, nil)
}

var (
	descRPO = metricDesc("vm_rpo_seconds",
		"Age of the VM's latest recovery point, in seconds (absent before the first point).", "vm")
	descProtectionState = metricDesc("vm_protection_state",
		"1 for the VM's current protection state, 0 for the others.", "vm", "state")
	descHealth = metricDesc("vm_replication_health",
		"1 for the VM's current replication health (Normal, Warning, Critical), 0 for the others.", "vm", "health")
	descHostReachable = metricDesc("host_reachable",
		"1 when the host's agent reports in time, 0 when it went silent; absent while its reachability is unknown.", "host", "site")
	descReplicationBytes = metricDesc("replication_bytes_total",
		"Bytes replicated for the VM: recovery point cycles, initial replication, resync and reverse replication.", "vm")
	descEventsAppended = metricDesc("events_appended_total",
		"Events in the event log, by type.", "type")
	descLogLastSeq = metricDesc("log_last_sequence",
		"Sequence of the last event in the event log.")
	descProjectionLag = metricDesc("projection_lag_events",
		"Events appended to the log and not yet applied by the read models.")
	descJobDuration = metricDesc("job_duration_seconds",
		fmt.Sprintf("Duration of finished jobs (the newest %d), by operation and final state.", metricsJobsLimit), "operation", "state")
)

// healthStates are the values of vm_replication_health.
var healthStates = []string{events.HealthNormal, events.HealthWarning, events.HealthCritical}

// metricsCollector is the prometheus.Collector of siterecovery. Collect may
// run concurrently: the log counters are guarded by mu.
type metricsCollector struct {
	log    EventSource
	rm     ReadModel
	logger zerolog.Logger

	mu      sync.Mutex
	next    uint64 // the next log sequence to count
	byType  map[string]float64
	bytesVM map[string]float64
}

var _ prometheus.Collector = (*metricsCollector)(nil)

func newMetricsCollector(log EventSource, rm ReadModel, logger zerolog.Logger) *metricsCollector {
	return &metricsCollector{log: log, rm: rm, logger: logger, next: 1,
		byType: map[string]float64{}, bytesVM: map[string]float64{}}
}

// newMetricsHandler serves a registry of its own (no global state) with
// the siterecovery collector and the Go and process collectors.
func newMetricsHandler(log EventSource, rm ReadModel, logger zerolog.Logger) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newMetricsCollector(log, rm, logger),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      promLogger{logger},
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       2 * metricsScrapeTimeout,
	})
	return promhttp.InstrumentMetricHandler(reg, h)
}

// promLogger logs promhttp's errors (a metric that could not be read).
type promLogger struct{ logger zerolog.Logger }

func (l promLogger) Println(v ...any) { l.logger.Error().Msg(fmt.Sprint(v...)) }

// Describe implements prometheus.Collector.
func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRPO, descProtectionState, descHealth, descHostReachable,
		descReplicationBytes, descEventsAppended, descLogLastSeq, descProjectionLag, descJobDuration} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A part that cannot be read is
// reported as an invalid metric (promhttp logs it and serves the rest).
func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), metricsScrapeTimeout)
	defer cancel()
	c.collectLog(ctx, ch)
	c.collectVMs(ctx, ch)
	c.collectHosts(ctx, ch)
	c.collectJobs(ctx, ch)
}

func (c *metricsCollector) collectLog(ctx context.Context, ch chan<- prometheus.Metric) {
	checkpoint := c.rm.Checkpoint()
	last, err := c.log.LastSeq(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descLogLastSeq, fmt.Errorf("event log last sequence: %w", err))
		return
	}
	ch <- prometheus.MustNewConstMetric(descLogLastSeq, prometheus.GaugeValue, float64(last))
	ch <- prometheus.MustNewConstMetric(descProjectionLag, prometheus.GaugeValue, float64(last-min(checkpoint, last)))
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.catchUp(ctx, last); err != nil {
		ch <- prometheus.NewInvalidMetric(descEventsAppended, err)
	}
	for t, n := range c.byType {
		ch <- prometheus.MustNewConstMetric(descEventsAppended, prometheus.CounterValue, n, t)
	}
	for vm, n := range c.bytesVM {
		ch <- prometheus.MustNewConstMetric(descReplicationBytes, prometheus.CounterValue, n, vm)
	}
}

// catchUp counts the events from c.next to last. Called with mu held. What
// it counted before an error stays counted.
func (c *metricsCollector) catchUp(ctx context.Context, last uint64) error {
	for c.next <= last {
		if err := c.readFrom(ctx, last); err != nil {
			return fmt.Errorf("counting the event log from %d: %w", c.next, err)
		}
	}
	return nil
}

// readFrom reads with one cursor up to last, or past one record the log
// cannot decode (counted as invalid).
func (c *metricsCollector) readFrom(ctx context.Context, last uint64) error {
	cur, err := c.log.Follow(ctx, c.next)
	if err != nil {
		return err
	}
	defer cur.Close()
	for c.next <= last {
		recs, err := cur.Next(ctx, metricsReadBatch)
		var bad *jetstream.RecordError
		if errors.As(err, &bad) {
			c.logger.Error().Err(bad).Msg("metrics: counting an event the log cannot decode as invalid")
			c.byType[invalidEventType]++
			c.next = bad.Seq + 1
			return nil
		}
		if err != nil {
			return err
		}
		for _, r := range recs {
			c.count(r)
		}
	}
	return nil
}

func (c *metricsCollector) count(r events.Record) {
	c.next = r.Seq + 1
	c.byType[string(r.Type())]++
	var n int64
	switch d := r.Data.(type) {
	case events.RecoveryPointCreatedData:
		n = d.Bytes
	case events.InitialReplicationCompletedData:
		n = d.SentBytes
	case events.ResyncCompletedData:
		n = d.SentBytes
	case events.ReverseReplicationCompletedData:
		n = d.SentBytes
	default:
		return
	}
	c.bytesVM[r.Aggregate.ID] += float64(n)
}

// queryAs runs a query and asserts its answer's type.
func queryAs[T any](ctx context.Context, rm ReadModel, name string, params string) (T, error) {
	var zero T
	res, err := rm.Query(ctx, name, json.RawMessage(params))
	if err != nil {
		return zero, fmt.Errorf("query %s: %w", name, err)
	}
	v, ok := res.(T)
	if !ok {
		return zero, fmt.Errorf("query %s answered a %T, want a %T", name, res, zero)
	}
	return v, nil
}

func (c *metricsCollector) collectVMs(ctx context.Context, ch chan<- prometheus.Metric) {
	vms, err := queryAs[[]projections.VMView](ctx, c.rm, "vms", "")
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descProtectionState, err)
		return
	}
	for _, vm := range vms {
		if vm.RPOSeconds != nil {
			ch <- prometheus.MustNewConstMetric(descRPO, prometheus.GaugeValue, float64(*vm.RPOSeconds), vm.Name)
		}
		for _, st := range events.VMStates {
			ch <- prometheus.MustNewConstMetric(descProtectionState, prometheus.GaugeValue, oneIf(string(st) == vm.ProtectionState), vm.Name, string(st))
		}
		for _, h := range healthStates {
			ch <- prometheus.MustNewConstMetric(descHealth, prometheus.GaugeValue, oneIf(h == vm.Health), vm.Name, h)
		}
	}
}

func (c *metricsCollector) collectHosts(ctx context.Context, ch chan<- prometheus.Metric) {
	hosts, err := queryAs[[]projections.HostView](ctx, c.rm, "hosts", "")
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descHostReachable, err)
		return
	}
	for _, h := range hosts {
		if h.Reachability == events.ReachabilityUnknown {
			continue // not heard yet and not silent for the threshold: no alert
		}
		ch <- prometheus.MustNewConstMetric(descHostReachable, prometheus.GaugeValue, oneIf(h.Reachable), h.Name, h.Site)
	}
}

// jobHistogram accumulates one label set of the job duration histogram.
type jobHistogram struct {
	count   uint64
	sum     float64
	buckets map[float64]uint64 // cumulative, as prometheus wants them
}

func (c *metricsCollector) collectJobs(ctx context.Context, ch chan<- prometheus.Metric) {
	jobs, err := queryAs[[]projections.Job](ctx, c.rm, "jobs", fmt.Sprintf(`{"limit":%d}`, metricsJobsLimit))
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descJobDuration, err)
		return
	}
	hists := map[[2]string]*jobHistogram{}
	for _, j := range jobs {
		if j.EndedAt == nil {
			continue
		}
		key := [2]string{j.Operation, j.State}
		h := hists[key]
		if h == nil {
			h = newJobHistogram()
			hists[key] = h
		}
		h.observe(max(j.EndedAt.Sub(j.StartedAt).Seconds(), 0))
	}
	for key, h := range hists {
		m, err := prometheus.NewConstHistogram(descJobDuration, h.count, h.sum, h.buckets, key[0], key[1])
		if err != nil {
			m = prometheus.NewInvalidMetric(descJobDuration, err)
		}
		ch <- m
	}
}

func newJobHistogram() *jobHistogram {
	h := &jobHistogram{buckets: make(map[float64]uint64, len(jobDurationBuckets))}
	for _, b := range jobDurationBuckets {
		h.buckets[b] = 0
	}
	return h
}

func (h *jobHistogram) observe(seconds float64) {
	h.count++
	h.sum += seconds
	for _, b := range jobDurationBuckets {
		if seconds <= b {
			h.buckets[b]++
		}
	}
}

func oneIf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
