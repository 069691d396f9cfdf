package projections

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/siterecovery/siterecovery/events"
)

// Recovery points are the most frequent write, so they are stored in a
// compact binary form rather than JSON:
//
//	0x01 id time(varint seconds, uvarint nanoseconds) flags cycle epoch
//	     nroots {key value}...
//
// where strings are a uvarint length and bytes, numbers uvarints, and bit 0
// of flags is app_consistent. Times come back in UTC.
const pointFormat = 1

func encodePoint(rp events.RecoveryPoint) []byte {
	b := make([]byte, 0, 48+len(rp.ID)+40*len(rp.Roots))
	b = append(b, pointFormat)
	b = appendString(b, rp.ID)
	b = binary.AppendVarint(b, rp.Time.Unix())
	b = binary.AppendUvarint(b, uint64(rp.Time.Nanosecond()))
	var flags byte
	if rp.AppConsistent {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, rp.Cycle)
	b = binary.AppendUvarint(b, rp.Epoch)
	b = binary.AppendUvarint(b, uint64(len(rp.Roots)))
	keys := make([]string, 0, len(rp.Roots))
	for k := range rp.Roots {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendString(appendString(b, k), rp.Roots[k])
	}
	return b
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// pointReader reads the fields of an encoded point, remembering the first
// error.
type pointReader struct {
	b   []byte
	err error
}

func (r *pointReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *pointReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *pointReader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *pointReader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *pointReader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("truncated recovery point: %w", ErrCorrupt)
	}
	r.b = nil
}

func decodePoint(b []byte) (events.RecoveryPoint, error) {
	r := &pointReader{b: b}
	if v := r.byte(); v != pointFormat {
		return events.RecoveryPoint{}, fmt.Errorf("recovery point format %d: %w", v, ErrCorrupt)
	}
	rp := events.RecoveryPoint{ID: r.string()}
	sec := r.varint()
	rp.Time = time.Unix(sec, int64(r.uvarint())).UTC()
	rp.AppConsistent = r.byte()&1 != 0
	rp.Cycle, rp.Epoch = r.uvarint(), r.uvarint()
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		if rp.Roots == nil {
			rp.Roots = make(map[string]string, n)
		}
		k := r.string()
		rp.Roots[k] = r.string()
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	return rp, r.err
}
