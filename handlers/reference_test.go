package handlers_test

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/siterecovery/siterecovery/events"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
	"github.com/siterecovery/siterecovery/handlers"
)

// commandsReference is the reference a client of the service reads.
const commandsReference = "../docs/reference/commands.md"

// documentedSubject matches an endpoint's own entry in the reference: a
// heading or the first cell of a table row naming one subject.
var documentedSubject = regexp.MustCompile("(?m)^(?:#+ |\\| )`(sr\\.(?:cmd|q)\\.[A-Za-z0-9_.<>]+)`")

// TestCommandsReferenceDocumentsEveryEndpoint starts the service with every
// extension serve adds (agent reports, failover reports, verify,
// automation: cmd/siterecovery's openControlPlane), asks micro for its
// endpoints ($SRV.INFO) and holds docs/reference/commands.md to them: every
// endpoint subject has an entry, and every entry names an endpoint.
func TestCommandsReferenceDocumentsEveryEndpoint(t *testing.T) {
	served := servedSubjects(t)
	documented := documentedSubjects(t)
	for _, s := range served {
		if !slices.Contains(documented, s) {
			t.Errorf("%s: the service registers %s, which has no entry (a heading or table row \"`%s`\")", commandsReference, s, s)
		}
	}
	for _, s := range documented {
		if !slices.Contains(served, s) {
			t.Errorf("%s: documents %s, which the service does not register", commandsReference, s)
		}
	}
}

// TestCommandsReferenceDocumentsEveryErrorCode: every code a reply can
// carry has a row in the reference's table of error codes.
func TestCommandsReferenceDocumentsEveryErrorCode(t *testing.T) {
	doc := readReference(t)
	for _, code := range []string{
		handlers.CodeInvalidArgument, handlers.CodeNotFound, handlers.CodeAlreadyExists, handlers.CodeInvalidState,
		handlers.CodeConflict, handlers.CodeUnavailable, handlers.CodeUnauthorized,
	} {
		if !strings.Contains(doc, "\n| `"+code+"` |") {
			t.Errorf("%s: error code %s has no row \"| `%s` |\" in the table of error codes", commandsReference, code, code)
		}
	}
}

// servedSubjects runs the service on an embedded server and returns its
// endpoints' subjects, an agent report's host wildcard written <host>.
func servedSubjects(t *testing.T) []string {
	t.Helper()
	srv := jstest.MustRunServer(t)
	nc := jstest.MustConnect(t, jstest.URL(srv))
	log, nop := events.NewMemLog(), zerolog.Nop()
	svc := handlers.New(log, nil, nop)
	svc.Extend(handlers.NewAgentHandlers(log, 0, nop))
	svc.Extend(handlers.NewFailoverReports(log, nil, nop))
	svc.Extend(handlers.NewVerifyHandlers(log, nc, nop))
	svc.Extend(handlers.NewAutomationHandlers(log, nil, nop))
	ctx := context.Background()
	if err := svc.Open(ctx, nc); err != nil {
		t.Fatalf("open the service: %v", err)
	}
	t.Cleanup(func() { _ = svc.Close(ctx) })
	msg, err := nc.Request("$SRV.INFO."+handlers.ServiceName, nil, 10*time.Second)
	if err != nil {
		t.Fatalf("ask the service for its endpoints: %v", err)
	}
	var info micro.Info
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatalf("service info %q: %v", msg.Data, err)
	}
	var out []string
	for _, ep := range info.Endpoints {
		out = append(out, strings.ReplaceAll(ep.Subject, ".*.", ".<host>."))
	}
	if len(out) < 10 {
		t.Fatalf("the service registers %d endpoints: %v", len(out), out)
	}
	slices.Sort(out)
	return out
}

func documentedSubjects(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, m := range documentedSubject.FindAllStringSubmatch(readReference(t), -1) {
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

func readReference(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(commandsReference)
	if err != nil {
		t.Fatalf("the commands reference is missing: %v", err)
	}
	return string(raw)
}
