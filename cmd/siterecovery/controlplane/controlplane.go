package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/httpapi"
	"github.com/siterecovery/siterecovery/cmd/siterecovery/pki"
	"github.com/siterecovery/siterecovery/events/jetstream"
	"github.com/siterecovery/siterecovery/events/subscribe"
	"github.com/siterecovery/siterecovery/handlers"
	"github.com/siterecovery/siterecovery/projections"
)

// maxPayload is the embedded server's max message size (8 MiB): delta
// batches are cut to fit it.
const maxPayload = 8 << 20

// ControlPlane is what `serve` runs: the embedded NATS server (unless --nats
// names one), the event log, the projections, the command handlers and the
// HTTP endpoint.
type ControlPlane struct {
	logger zerolog.Logger
	srv    *server.Server
	nc     *nats.Conn
	log    *jetstream.Log
	store  *projections.Store
	svc    *handlers.Service
	http   *http.Server
	httpLn net.Listener
	agents *handlers.AgentHandlers
	pm     *handlers.PM
	health *handlers.HealthMonitor

	automations *projections.Automations
	automation  *handlers.AutomationRunner

	stop      context.CancelFunc // ends the background loops
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

func Open(ctx context.Context, cfg Config, logger zerolog.Logger) (cp *ControlPlane, err error) {
	cp = &ControlPlane{logger: logger}
	defer func() {
		if err != nil {
			closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = errors.Join(err, cp.Close(closeCtx))
		}
	}()
	if err := os.MkdirAll(cfg.Data, 0o750); err != nil {
		return cp, fmt.Errorf("data dir: %w", err)
	}
	url := cfg.NATSURL
	if url == "" {
		if err := cp.startServer(cfg, logger); err != nil {
			return cp, err
		}
		url = cp.srv.ClientURL()
	}
	tlsOpts, err := pki.NATSOptions(cfg.TLSDir, pki.RoleControl)
	if err != nil {
		return cp, err
	}
	if cp.nc, err = Connect(url, "siterecovery-serve", logger, tlsOpts...); err != nil {
		return cp, err
	}
	if cp.log, err = jetstream.Open(ctx, cp.nc, jetstream.Config{Replicas: cfg.Replicas, Logger: logger.With().Str("component", "log").Logger()}); err != nil {
		return cp, fmt.Errorf("event log: %w", err)
	}
	dbPath := filepath.Join(cfg.Data, "projections.db")
	if cp.store, err = projections.Open(ctx, dbPath, cp.log, logger.With().Str("component", "projections").Logger()); err != nil {
		return cp, fmt.Errorf("projections: %w", err)
	}
	cp.agents = handlers.NewAgentHandlers(cp.log, handlers.DefaultUnreachableAfter, logger)
	rm := readModel{Store: cp.store, heard: cp.agents.Heard}
	cp.svc = handlers.New(cp.log, rm, logger.With().Str("component", "handlers").Logger())
	cp.svc.Extend(cp.agents)
	cp.svc.Extend(handlers.NewFailoverReports(cp.log, cp.store, logger))
	cp.svc.Extend(handlers.NewVerifyHandlers(cp.log, cp.nc, logger)) // vm verify
	cp.automations = projections.NewAutomations(cp.log, logger)
	if err := cp.automations.Open(ctx); err != nil {
		return cp, fmt.Errorf("automations: %w", err)
	}
	cp.svc.Extend(handlers.NewAutomationHandlers(cp.log, cp.automations, logger))
	if err := cp.svc.Open(ctx, cp.nc); err != nil {
		return cp, fmt.Errorf("command service: %w", err)
	}
	cp.pm = handlers.NewPM(cp.log, handlers.PMConfig{Dir: filepath.Join(cfg.Data, "pm"), FailoverTimeout: cfg.FailoverTimeout}, logger)
	if err := cp.pm.Open(ctx); err != nil {
		return cp, fmt.Errorf("process manager: %w", err)
	}
	cp.health = handlers.NewHealthMonitor(cp.log, cp.store, handlers.HealthConfig{}, logger)
	if err := cp.health.Open(ctx); err != nil {
		return cp, fmt.Errorf("health monitor: %w", err)
	}
	if err := cp.startAutomation(ctx, logger); err != nil {
		return cp, err
	}
	cp.startLoops()
	if err := cp.keepDeltaStreams(); err != nil {
		return cp, err
	}
	if cfg.HTTP != "" {
		if err := cp.startHTTP(cfg.HTTP, cfg.TLSDir); err != nil {
			return cp, err
		}
	}
	return cp, nil
}

func (cp *ControlPlane) startServer(cfg Config, logger zerolog.Logger) error {
	host, port, err := SplitHostPort(cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if port == 0 {
		port = -1 // a random free port, as net.Listen does for :0
	}
	var auth *jetstream.AuthConfig
	if cfg.TLSDir != "" {
		if auth, err = pki.ServerAuth(cfg.TLSDir); err != nil {
			return err
		}
	}
	srv, err := jetstream.StartServer(jetstream.ServerConfig{
		Name:       "siterecovery",
		Dir:        filepath.Join(cfg.Data, "nats"),
		Host:       host,
		Port:       port,
		SyncAlways: true,
		MaxPayload: maxPayload,
		NoLog:      true,
		Auth:       auth,
	})
	if err != nil {
		return fmt.Errorf("embedded NATS server: %w", err)
	}
	cp.srv = srv
	logger.Info().Str("url", srv.ClientURL()).Str("store", filepath.Join(cfg.Data, "nats")).Msg("embedded NATS server with JetStream")
	return nil
}

// startAutomation runs the automation rules on the shared durable consumer
// of the log.
func (cp *ControlPlane) startAutomation(ctx context.Context, logger zerolog.Logger) error {
	inbox, err := subscribe.OpenDurable(ctx, cp.nc, subscribe.DurableConfig{Name: handlers.AutomationConsumer})
	if err != nil {
		return fmt.Errorf("automation consumer: %w", err)
	}
	cp.automation = handlers.NewAutomationRunner(cp.log, cp.automations, inbox, handlers.AutomationRunnerConfig{}, logger)
	if err := cp.automation.Open(ctx); err != nil {
		cp.automation = nil
		return errors.Join(fmt.Errorf("automation runner: %w", err), inbox.Close())
	}
	return nil
}

// startLoops starts the control plane's background work: the sweep that
// marks silent hosts unreachable (keepDeltaStreams adds the delta streams'
// loop).
func (cp *ControlPlane) startLoops() {
	ctx, stop := context.WithCancel(context.Background())
	cp.stop = stop
	cp.wg.Add(1)
	go func() {
		defer cp.wg.Done()
		cp.agents.RunSweeper(ctx, cp.registeredHosts)
	}()
}

// registeredHosts names every registered host, from the read model.
func (cp *ControlPlane) registeredHosts() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := cp.store.Query(ctx, "hosts", nil)
	if err != nil {
		cp.logger.Warn().Err(err).Msg("list hosts for the reachability sweep")
		return nil
	}
	raw, err := json.Marshal(res)
	if err != nil {
		return nil
	}
	var hosts []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(raw, &hosts); err != nil {
		cp.logger.Warn().Err(err).Msg("hosts query shape")
		return nil
	}
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.Name
	}
	return names
}

// Connect opens a NATS connection that reconnects forever and logs its
// state changes.
func Connect(url, name string, logger zerolog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	all := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: our own Close or Drain
				logger.Warn().Err(err).Msg("NATS disconnected")
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			logger.Info().Str("url", c.ConnectedUrl()).Msg("NATS reconnected")
		}),
	}
	nc, err := nats.Connect(url, append(all, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}

func (cp *ControlPlane) startHTTP(addr, tlsDir string) error {
	ln, err := httpapi.Listen(addr, tlsDir)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", cp.healthz)
	cp.httpLn = ln
	cp.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	httpapi.Register(mux, cp.http, cp.nc, cp.log, cp.store, cp.logger)
	if cp.http.Handler, err = httpapi.WithBearerAuth(mux, tlsDir, cp.logger); err != nil {
		ln.Close()
		return err
	}
	go func() {
		if err := cp.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cp.logger.Error().Err(err).Msg("HTTP server stopped")
		}
	}()
	return nil
}

func (cp *ControlPlane) healthz(w http.ResponseWriter, r *http.Request) {
	if err := cp.store.Err(); err != nil {
		http.Error(w, "projections stopped: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if cp.nc.Status() != nats.CONNECTED {
		http.Error(w, "NATS "+cp.nc.Status().String(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "ok checkpoint=%d\n", cp.store.Checkpoint())
}

// URL is the NATS URL agents and operators use.
func (cp *ControlPlane) URL() string {
	if cp.srv != nil {
		return cp.srv.ClientURL()
	}
	return cp.nc.ConnectedUrl()
}

// Close stops everything in reverse order; it is safe twice.
func (cp *ControlPlane) Close(ctx context.Context) error {
	cp.closeOnce.Do(func() {
		var errs []error
		if cp.stop != nil {
			cp.stop()
			cp.wg.Wait()
		}
		if cp.http != nil {
			errs = append(errs, cp.http.Shutdown(ctx))
		}
		if cp.svc != nil {
			errs = append(errs, cp.svc.Close(ctx))
		}
		if cp.automation != nil {
			errs = append(errs, cp.automation.Close(ctx))
		}
		if cp.automations != nil {
			errs = append(errs, cp.automations.Close())
		}
		if cp.health != nil {
			errs = append(errs, cp.health.Close(ctx))
		}
		if cp.pm != nil {
			errs = append(errs, cp.pm.Close(ctx))
		}
		if cp.store != nil {
			errs = append(errs, cp.store.Close())
		}
		if cp.log != nil {
			errs = append(errs, cp.log.Close())
		}
		if cp.nc != nil {
			errs = append(errs, cp.nc.Drain())
		}
		if cp.srv != nil {
			cp.srv.Shutdown()
			cp.srv.WaitForShutdown()
		}
		cp.closeErr = errors.Join(errs...)
	})
	return cp.closeErr
}

// Log is the control plane's event log: the harnesses and tests read it
// (Load, Follow, LastSeq) as the projections do.
func (cp *ControlPlane) Log() *jetstream.Log { return cp.log }

// Conn is the control plane's own NATS connection.
func (cp *ControlPlane) Conn() *nats.Conn { return cp.nc }

// Store is the read models (the projections).
func (cp *ControlPlane) Store() *projections.Store { return cp.store }

// Service is the micro service that takes the commands and queries.
func (cp *ControlPlane) Service() *handlers.Service { return cp.svc }

// Server is the embedded NATS server, nil when Config.NATSURL names one.
func (cp *ControlPlane) Server() *server.Server { return cp.srv }

// HTTPAddr is the address the HTTP endpoint listens on, nil when
// Config.HTTP is empty.
func (cp *ControlPlane) HTTPAddr() net.Addr {
	if cp.httpLn == nil {
		return nil
	}
	return cp.httpLn.Addr()
}
