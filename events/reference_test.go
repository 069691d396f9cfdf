package events_test

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/siterecovery/siterecovery/events"
)

// referencePath is the catalog as a client reads it.
const referencePath = "../docs/reference/events.md"

// eventSection matches the heading of one event type's section.
var eventSection = regexp.MustCompile("(?m)^### `([a-z0-9_]+)`\\s*$")

// TestEventsReferenceDocumentsEveryType holds docs/reference/events.md to
// the catalog: every type has a section whose first line names its kind
// and current version, every field of its data is named in it, and no
// section names a type the catalog does not have.
func TestEventsReferenceDocumentsEveryType(t *testing.T) {
	sections := readEventSections(t)
	for _, typ := range sortedTypes() {
		sec, ok := sections[string(typ)]
		if !ok {
			t.Errorf("%s: no section \"### `%s`\" for event type %s (kind %s, version %d)",
				referencePath, typ, typ, typ.Kind(), events.CurrentVersion(typ))
			continue
		}
		first := firstLine(sec)
		if want := fmt.Sprintf("kind `%s`", typ.Kind()); !strings.Contains(first, want) {
			t.Errorf("%s: section %s: first line %q does not name its aggregate kind (%s)", referencePath, typ, first, want)
		}
		if want := fmt.Sprintf("version %d", events.CurrentVersion(typ)); !strings.Contains(first, want) {
			t.Errorf("%s: section %s: first line %q does not name its current version (%s)", referencePath, typ, first, want)
		}
		for _, f := range dataFields(t, typ) {
			if !strings.Contains(sec, "`"+f+"`") {
				t.Errorf("%s: section %s does not document data field `%s`", referencePath, typ, f)
			}
		}
	}
	for name := range sections {
		if !events.Type(name).Known() {
			t.Errorf("%s: section %q names no event type of the catalog (events/types.go)", referencePath, name)
		}
	}
}

// readEventSections returns each event section's text (heading excluded)
// by type name, up to the next heading of level 2 or 3.
func readEventSections(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatalf("the events reference is missing: %v", err)
	}
	doc := string(raw)
	out := map[string]string{}
	locs := eventSection.FindAllStringSubmatchIndex(doc, -1)
	for _, loc := range locs {
		name, body := doc[loc[2]:loc[3]], doc[loc[1]:]
		if end := nextHeading(body); end >= 0 {
			body = body[:end]
		}
		if _, dup := out[name]; dup {
			t.Errorf("%s: two sections for %s", referencePath, name)
		}
		out[name] = body
	}
	return out
}

func nextHeading(body string) int {
	ends := []int{}
	for _, h := range []string{"\n## ", "\n### "} {
		if i := strings.Index(body, h); i >= 0 {
			ends = append(ends, i)
		}
	}
	if len(ends) == 0 {
		return -1
	}
	return slices.Min(ends)
}

func firstLine(sec string) string {
	for _, l := range strings.Split(sec, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// dataFields are the JSON names of typ's data fields, those of embedded
// structs included, got from the data struct the codec decodes typ into.
func dataFields(t *testing.T, typ events.Type) []string {
	t.Helper()
	env := fmt.Sprintf(`{"type":%q,"version":%d,"at":"2026-11-26T00:00:00Z","command_id":"c","data":{}}`, typ, events.CurrentVersion(typ))
	_, d, err := events.Decode([]byte(env))
	if err != nil {
		t.Fatalf("decode an empty %s: %v", typ, err)
	}
	return jsonFields(reflect.TypeOf(d))
}

func jsonFields(st reflect.Type) []string {
	var out []string
	for i := range st.NumField() {
		f := st.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported():
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			out = append(out, jsonFields(f.Type)...)
		case name == "":
			out = append(out, f.Name)
		default:
			out = append(out, name)
		}
	}
	return out
}
