package projections

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

func TestPointCodecRoundTrip(t *testing.T) {
	for _, rp := range []events.RecoveryPoint{
		{},
		{ID: "rp-1", Time: time.Date(2026, 11, 26, 1, 2, 3, 456789, time.UTC), AppConsistent: true, Cycle: 7, Epoch: 2,
			Roots: map[string]string{"disk0": "abc", "disk1": "def"}},
		{ID: "old", Time: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		got, err := decodePoint(encodePoint(rp))
		require.NoError(t, err)
		require.True(t, rp.Time.Equal(got.Time))
		got.Time = rp.Time
		require.Equal(t, rp, got)
	}
	for _, bad := range [][]byte{nil, {2}, {1}, {1, 5, 'a'}, append(encodePoint(events.RecoveryPoint{ID: "x"}), 0)} {
		_, err := decodePoint(bad)
		require.ErrorIs(t, err, ErrCorrupt, "%x", bad)
	}
}

func FuzzDecodePoint(f *testing.F) {
	f.Add(encodePoint(events.RecoveryPoint{ID: "rp", Time: time.Unix(1700000000, 5), Roots: map[string]string{"d": "r"}}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		rp, err := decodePoint(b)
		if err != nil {
			return
		}
		again, err := decodePoint(encodePoint(rp))
		require.NoError(t, err)
		require.True(t, rp.Time.Equal(again.Time))
		require.Equal(t, rp.ID, again.ID)
		require.Equal(t, len(rp.Roots), len(again.Roots))
	})
}
