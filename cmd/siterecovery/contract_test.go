package main

import (
	"bytes"
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

	"github.com/siterecovery/siterecovery/cmd/siterecovery/controlplane"
	"github.com/siterecovery/siterecovery/events/agentproto"
	"github.com/siterecovery/siterecovery/events/jetstream/jstest"
	"github.com/siterecovery/siterecovery/handlers"
)

// cliReference is the reference of every command and flag.
const cliReference = "../../docs/reference/cli.md"

// contractSubcommands are the commands that are not operator commands.
var contractSubcommands = [][]string{{"serve"}, {"agent"}, {"demo"}, {"bench"}, {"soak"}, {"scale"}, {"auth", "init"}}

// contractCommonFlags is the heading of the table of the flags every
// operator command takes.
const contractCommonFlags = "Flags every operator command takes:"

// TestCLIReferenceDocumentsEveryCommandAndFlag holds docs/reference/cli.md
// to the binary: every subcommand has a section naming each flag its -h
// lists, and every operator command of opCommands a row naming its subject
// and each of its flags (or the flag is in the table of common flags).
func TestCLIReferenceDocumentsEveryCommandAndFlag(t *testing.T) {
	doc := readCLIReference(t)
	for _, words := range contractSubcommands {
		name := "siterecovery " + strings.Join(words, " ")
		sec, ok := contractSection(doc, "### `"+name+"`")
		if !ok {
			t.Errorf("%s: no section \"### `%s`\"", cliReference, name)
			continue
		}
		for _, f := range helpFlags(t, words) {
			if !namesFlag(sec, f) {
				t.Errorf("%s: section %s does not document its flag --%s", cliReference, name, f)
			}
		}
	}
	common, ok := contractSection(doc, contractCommonFlags)
	if !ok {
		t.Fatalf("%s: no table after %q", cliReference, contractCommonFlags)
	}
	for i := range opCommands {
		c := &opCommands[i]
		row, ok := commandRow(doc, c.name())
		if !ok {
			t.Errorf("%s: operator command %q has no row \"| `siterecovery %s ...` |\"", cliReference, c.name(), c.name())
			continue
		}
		if !strings.Contains(row, "`"+c.subject+"`") {
			t.Errorf("%s: the row of %q does not name its subject %s", cliReference, c.name(), c.subject)
		}
		for _, f := range helpFlags(t, strings.Fields(c.name())) {
			if !namesFlag(row, f) && !namesFlag(common, f) {
				t.Errorf("%s: flag --%s of %q is neither in its row nor in the common flags", cliReference, f, c.name())
			}
		}
	}
}

// TestCLICommandsNameServedSubjects: every operator command sends to a
// subject the control plane's micro service serves, and every command and
// query the service serves (agent reports aside) has an operator command.
func TestCLICommandsNameServedSubjects(t *testing.T) {
	served := contractServedSubjects(t)
	var named []string
	for _, c := range opCommands {
		named = append(named, c.subject)
		if !slices.Contains(served, c.subject) {
			t.Errorf("operator command %q sends to %s, which the control plane does not serve", c.name(), c.subject)
		}
	}
	for _, s := range served {
		if !strings.HasPrefix(s, agentproto.ReportPrefix+".") && !slices.Contains(named, s) {
			t.Errorf("the control plane serves %s, which no operator command sends to", s)
		}
	}
}

func readCLIReference(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(cliReference)
	if err != nil {
		t.Fatalf("the CLI reference is missing: %v", err)
	}
	return string(raw)
}

// contractSection is the text after the line start, up to the next
// heading.
func contractSection(doc, start string) (string, bool) {
	i := strings.Index(doc, "\n"+start+"\n")
	if i < 0 {
		return "", false
	}
	sec := doc[i+len(start)+2:]
	if end := strings.Index(sec, "\n#"); end >= 0 {
		sec = sec[:end]
	}
	return sec, true
}

// commandRow is the table row of the operator command name.
func commandRow(doc, name string) (string, bool) {
	re := regexp.MustCompile("(?m)^\\| `siterecovery " + regexp.QuoteMeta(name) + "[ `].*$")
	row := re.FindString(doc)
	return row, row != ""
}

// namesFlag reports whether text names the flag: `--name or `-name, then
// its value or the closing backtick.
func namesFlag(text, name string) bool {
	return regexp.MustCompile("`--?" + regexp.QuoteMeta(name) + "[` =]").MatchString(text)
}

// helpFlag matches a flag in the usage -h prints.
var helpFlag = regexp.MustCompile(`(?m)^  -([A-Za-z0-9][A-Za-z0-9-]*)`)

// helpFlags runs `siterecovery <words> -h` and returns the flags it lists.
func helpFlags(t *testing.T, words []string) []string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	run(append(slices.Clone(words), "-h"), &stdout, &stderr)
	var out []string
	for _, m := range helpFlag.FindAllStringSubmatch(stderr.String(), -1) {
		out = append(out, m[1])
	}
	if len(out) == 0 {
		t.Fatalf("siterecovery %s -h lists no flag: %q", strings.Join(words, " "), stderr.String())
	}
	return out
}

// contractServedSubjects runs the control plane as serve runs it (embedded
// NATS, every extension of the service) and returns the subjects of its
// endpoints ($SRV.INFO).
func contractServedSubjects(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	cp, err := controlplane.Open(ctx, controlplane.Config{Data: t.TempDir(), Listen: "127.0.0.1:0"}, zerolog.Nop())
	if err != nil {
		t.Fatalf("open the control plane: %v", err)
	}
	t.Cleanup(func() { _ = cp.Close(ctx) })
	nc := jstest.MustConnect(t, cp.URL())
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
		out = append(out, ep.Subject)
	}
	return out
}
