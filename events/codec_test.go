package events_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

func envelope(typ string, version int, commandID, data string) []byte {
	return fmt.Appendf(nil, `{"type":%q,"version":%d,"at":"2026-11-26T00:00:00Z","command_id":%q,"data":%s}`, typ, version, commandID, data)
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name    string
		payload []byte
		want    error
	}{
		{"not JSON", []byte("garbage"), events.ErrDecode},
		{"empty", nil, events.ErrDecode},
		{"JSON array", []byte(`[1,2]`), events.ErrDecode},
		{"unknown type", envelope("vm_exploded", 1, "c", `{}`), events.ErrUnknownType},
		{"empty type", envelope("", 1, "c", `{}`), events.ErrUnknownType},
		{"newer version", envelope("vm_created", 2, "c", `{}`), events.ErrUnknownVersion},
		{"version 0", envelope("vm_created", 0, "c", `{}`), events.ErrUnknownVersion},
		{"missing command_id", envelope("vm_created", 1, "", `{}`), events.ErrDecode},
		{"missing at", []byte(`{"type":"vm_created","version":1,"command_id":"c","data":{}}`), events.ErrDecode},
		{"missing data", []byte(`{"type":"vm_created","version":1,"at":"2026-11-26T00:00:00Z","command_id":"c"}`), events.ErrDecode},
		{"null data", envelope("vm_created", 1, "c", `null`), events.ErrDecode},
		{"array data", envelope("vm_created", 1, "c", `[]`), events.ErrDecode},
		{"string data", envelope("vm_created", 1, "c", `"web01"`), events.ErrDecode},
		{"number data", envelope("vm_created", 1, "c", `5`), events.ErrDecode},
		{"field of the wrong type", envelope("vm_created", 1, "c", `{"name":5}`), events.ErrDecode},
		{"bad duration", envelope("policy_created", 1, "c", `{"copy_frequency":"soon"}`), events.ErrDecode},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, d, err := events.Decode(tc.payload)
			require.ErrorIs(t, err, tc.want)
			require.Nil(t, d)
		})
	}
}

type unknownData struct{}

func (unknownData) EventType() events.Type { return "no_such_event" }

func TestEncodeErrors(t *testing.T) {
	_, err := events.Encode(events.Meta{CommandID: "c"}, nil)
	require.ErrorIs(t, err, events.ErrUnknownType)
	_, err = events.Encode(events.Meta{CommandID: "c"}, unknownData{})
	require.ErrorIs(t, err, events.ErrUnknownType)
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, typ := range sortedTypes() {
		d := sampleData(t, typ)
		meta := events.Meta{At: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 3600)), CommandID: "c-1", CorrelationID: "job-1", Actor: "op"}
		raw, err := events.Encode(meta, d)
		require.NoError(t, err)
		got, d2, err := events.Decode(raw)
		require.NoError(t, err, typ)
		require.Equal(t, d, d2, typ)
		require.True(t, meta.At.Equal(got.At))
		require.Equal(t, time.UTC, got.At.Location(), "at is written in UTC")
		require.Equal(t, meta.CommandID, got.CommandID)
		require.Equal(t, meta.CorrelationID, got.CorrelationID)
		require.Equal(t, meta.Actor, got.Actor)
	}
	// A zero At is stamped now.
	raw, err := events.Encode(events.Meta{CommandID: "c"}, events.ReplicationPausedData{})
	require.NoError(t, err)
	meta, _, err := events.Decode(raw)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), meta.At, time.Minute)
}

// FuzzDecode: Decode never panics, and what it decodes re-encodes to an
// event that decodes to the same thing, stably.
func FuzzDecode(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	for _, p := range paths {
		if raw, err := os.ReadFile(p); err == nil {
			f.Add(raw)
		}
	}
	f.Add([]byte("garbage"))
	f.Add(envelope("vm_created", 1, "c", `{"name":"web01","disks":[{"name":"d","size":-1}]}`))
	f.Add(envelope("policy_created", 1, "c", `{"copy_frequency":30000000000}`))
	f.Add(envelope("recovery_point_created", 1, "c", `{"roots":{}}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		meta, d, err := events.Decode(payload)
		if err != nil {
			require.Nil(t, d)
			return
		}
		first, err := events.Encode(meta, d)
		require.NoError(t, err)
		meta2, d2, err := events.Decode(first)
		require.NoError(t, err, "re-encoded: %s", first)
		require.Equal(t, d.EventType(), d2.EventType())
		require.True(t, meta.At.Equal(meta2.At))
		second, err := events.Encode(meta2, d2)
		require.NoError(t, err)
		require.True(t, bytes.Equal(first, second), "unstable:\n%s\n%s", first, second)
	})
}
