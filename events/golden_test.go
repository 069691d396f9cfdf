package events_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

// -update writes the golden file of every event type that has none yet.
// Existing golden files are history and are never rewritten: a change of an
// event's shape is a new version with its own file.
var update = flag.Bool("update", false, "write missing golden files in testdata/golden")

var goldenAt = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)

func goldenPath(t events.Type, version int) string {
	return filepath.Join("testdata", "golden", fmt.Sprintf("%s.v%d.json", t, version))
}

func sortedTypes() []events.Type {
	ts := events.Types()
	slices.Sort(ts)
	return ts
}

// TestGoldenFilesExist: every type of the catalog has a golden file of its
// current version (run go test ./events -run Golden -update to write the
// missing ones).
func TestGoldenFilesExist(t *testing.T) {
	for _, typ := range sortedTypes() {
		path := goldenPath(typ, events.CurrentVersion(typ))
		if _, err := os.Stat(path); os.IsNotExist(err) && *update {
			writeGolden(t, typ, path)
		}
		_, err := os.Stat(path)
		require.NoError(t, err, "golden file of %s (run with -update to write it)", typ)
	}
}

// TestGoldenFilesDecode: every golden file decodes to its type, loses no
// field, and re-encodes to the same JSON.
func TestGoldenFilesDecode(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			raw, err := os.ReadFile(path)
			require.NoError(t, err)
			meta, d, err := events.Decode(raw)
			require.NoError(t, err)
			name := strings.TrimSuffix(filepath.Base(path), ".json")
			require.Equal(t, string(d.EventType()), name[:strings.LastIndex(name, ".v")])

			again, err := events.Encode(meta, d)
			require.NoError(t, err)
			var env events.Envelope
			require.NoError(t, json.Unmarshal(raw, &env))
			if env.Version == events.CurrentVersion(env.Type) {
				require.JSONEq(t, string(raw), string(again), "re-encoding changes the event")
			}
			meta2, d2, err := events.Decode(again)
			require.NoError(t, err)
			require.Equal(t, d, d2)
			require.True(t, meta.At.Equal(meta2.At))
			meta.At, meta2.At = time.Time{}, time.Time{}
			require.Equal(t, meta, meta2)
		})
	}
}

func writeGolden(t *testing.T, typ events.Type, path string) {
	t.Helper()
	d := sampleData(t, typ)
	meta := events.Meta{At: goldenAt, CommandID: "cmd-1", CorrelationID: "cmd-1", Actor: "operator"}
	raw, err := events.Encode(meta, d)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, json.Indent(&out, raw, "", "  "))
	out.WriteByte('\n')
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, out.Bytes(), 0o644))
	t.Logf("wrote %s", path)
}

// sampleData is a value of typ's data with every field set, for a new
// golden file. It gets the data's Go type from the codec itself.
func sampleData(t *testing.T, typ events.Type) events.Data {
	t.Helper()
	env := fmt.Sprintf(`{"type":%q,"version":1,"at":"2026-11-26T00:00:00Z","command_id":"c","data":{}}`, typ)
	_, zero, err := events.Decode([]byte(env))
	require.NoError(t, err)
	v := reflect.New(reflect.TypeOf(zero)).Elem()
	fill(v, "")
	return v.Interface().(events.Data)
}

var (
	durationType = reflect.TypeOf(events.Duration(0))
	timeType     = reflect.TypeOf(time.Time{})
)

// fill sets every field of v to a plausible non-zero value.
func fill(v reflect.Value, name string) {
	switch {
	case v.Type() == durationType:
		v.SetInt(int64(30 * time.Second))
	case v.Type() == timeType:
		v.Set(reflect.ValueOf(goldenAt.Add(-time.Minute)))
	}
	if v.Type() == durationType || v.Type() == timeType {
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(strings.ToLower(name) + "-1")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(4096)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(0.5)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), v.Type().Field(i).Name)
			}
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0), strings.TrimSuffix(name, "s"))
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, "key")
		fill(e, name)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), name)
		v.Set(p)
	}
}
