package hostsync

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// NBD protocol constants (fixed newstyle negotiation, simple and structured
// replies), as doc/proto.md of the NBD project defines them.
const (
	nbdMagic        = 0x4e42444d41474943 // "NBDMAGIC"
	nbdOptMagic     = 0x49484156454f5054 // "IHAVEOPT"
	nbdOptReplyMag  = 0x3e889045565a9
	nbdRequestMagic = 0x25609513
	nbdSimpleMagic  = 0x67446698
	nbdStructMagic  = 0x668e33ef

	nbdFlagFixedNewstyle = 1 << 0
	nbdFlagNoZeroes      = 1 << 1

	nbdOptExportName     = 1
	nbdOptAbort          = 2
	nbdOptList           = 3
	nbdOptInfo           = 6
	nbdOptGo             = 7
	nbdOptStructuredRepl = 8

	nbdRepAck        = 1
	nbdRepServer     = 2
	nbdRepInfo       = 3
	nbdRepErrUnsup   = 1<<31 | 1
	nbdRepErrInvalid = 1<<31 | 3
	nbdRepErrUnknown = 1<<31 | 6

	nbdInfoExport    = 0
	nbdInfoName      = 1
	nbdInfoBlockSize = 3

	nbdTFlagHasFlags     = 1 << 0
	nbdTFlagSendFlush    = 1 << 2
	nbdTFlagSendFUA      = 1 << 3
	nbdTFlagSendTrim     = 1 << 5
	nbdTFlagWriteZeroes  = 1 << 6
	nbdTFlagCanMultiConn = 1 << 8

	nbdCmdRead        = 0
	nbdCmdWrite       = 1
	nbdCmdDisc        = 2
	nbdCmdFlush       = 3
	nbdCmdTrim        = 4
	nbdCmdWriteZeroes = 6

	nbdCmdFlagFUA    = 1 << 0
	nbdCmdFlagNoHole = 1 << 1

	nbdReplyFlagDone    = 1 << 0
	nbdReplyTypeNone    = 0
	nbdReplyTypeOffData = 1
	nbdReplyTypeError   = 1<<15 | 1

	nbdEPERM     = 1
	nbdEIO       = 5
	nbdEINVAL    = 22
	nbdENOSPC    = 28
	nbdENOTSUP   = 95
	nbdESHUTDOWN = 108
)

// nbdTransmitFlags are the transmission flags every export advertises.
// CAN_MULTI_CONN holds because a flush syncs the whole disk, so it covers
// writes completed on every connection.
const nbdTransmitFlags = nbdTFlagHasFlags | nbdTFlagSendFlush | nbdTFlagSendFUA |
	nbdTFlagSendTrim | nbdTFlagWriteZeroes | nbdTFlagCanMultiConn

// Limits. nbdMaxPayload is the largest read or write accepted (advertised
// as the maximum block size); nbdMaxOptionLen bounds option data.
const (
	nbdMaxPayload       = 32 << 20
	nbdPreferredBlock   = 4096
	nbdMaxOptionLen     = 64 << 10
	nbdRequestHeaderLen = 28
)

var errNBDBadMagic = errors.New("nbd: bad request magic")

// nbdRequest is one transmission-phase request header.
type nbdRequest struct {
	flags  uint16
	typ    uint16
	cookie uint64
	offset uint64
	length uint32
}

// parseNBDRequest decodes a 28-byte request header.
func parseNBDRequest(b []byte) (nbdRequest, error) {
	if len(b) < nbdRequestHeaderLen {
		return nbdRequest{}, fmt.Errorf("nbd: short request header (%d bytes)", len(b))
	}
	if binary.BigEndian.Uint32(b) != nbdRequestMagic {
		return nbdRequest{}, errNBDBadMagic
	}
	return nbdRequest{
		flags:  binary.BigEndian.Uint16(b[4:]),
		typ:    binary.BigEndian.Uint16(b[6:]),
		cookie: binary.BigEndian.Uint64(b[8:]),
		offset: binary.BigEndian.Uint64(b[16:]),
		length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

// check validates a request against the export size: it returns 0 or the
// NBD errno to answer with.
func (r nbdRequest) check(size int64) uint32 {
	mask, ok := nbdAllowedFlags(r.typ)
	if !ok || r.flags&^mask != 0 {
		return nbdEINVAL
	}
	if r.typ == nbdCmdFlush {
		return 0
	}
	if (r.typ == nbdCmdRead || r.typ == nbdCmdWrite) && r.length > nbdMaxPayload {
		return nbdEINVAL
	}
	if r.offset > uint64(size) || uint64(r.length) > uint64(size)-r.offset {
		if r.typ == nbdCmdRead {
			return nbdEINVAL
		}
		return nbdENOSPC
	}
	return 0
}

// nbdAllowedFlags gives the command flags a command type accepts, and
// whether the type is served at all.
func nbdAllowedFlags(typ uint16) (uint16, bool) {
	switch typ {
	case nbdCmdRead, nbdCmdFlush:
		return 0, true
	case nbdCmdWrite, nbdCmdTrim:
		return nbdCmdFlagFUA, true
	case nbdCmdWriteZeroes:
		return nbdCmdFlagFUA | nbdCmdFlagNoHole, true
	}
	return 0, false
}

func putSimpleReply(b []byte, errno uint32, cookie uint64) []byte {
	b = binary.BigEndian.AppendUint32(b, nbdSimpleMagic)
	b = binary.BigEndian.AppendUint32(b, errno)
	return binary.BigEndian.AppendUint64(b, cookie)
}

func putChunkHeader(b []byte, flags, typ uint16, cookie uint64, length uint32) []byte {
	b = binary.BigEndian.AppendUint32(b, nbdStructMagic)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	return binary.BigEndian.AppendUint32(b, length)
}

// putErrorChunk appends a final NBD_REPLY_TYPE_ERROR chunk with a message.
func putErrorChunk(b []byte, cookie uint64, errno uint32, msg string) []byte {
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	b = putChunkHeader(b, nbdReplyFlagDone, nbdReplyTypeError, cookie, uint32(6+len(msg)))
	b = binary.BigEndian.AppendUint32(b, errno)
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	return append(b, msg...)
}

// putOptReply appends an option reply header; data follows it.
func putOptReply(b []byte, opt, typ uint32, length int) []byte {
	b = binary.BigEndian.AppendUint64(b, nbdOptReplyMag)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, typ)
	return binary.BigEndian.AppendUint32(b, uint32(length))
}

// nbdInfoRequest is the payload of NBD_OPT_INFO and NBD_OPT_GO.
type nbdInfoRequest struct {
	name  string
	infos []uint16
}

func parseNBDInfoRequest(data []byte) (nbdInfoRequest, error) {
	if len(data) < 6 {
		return nbdInfoRequest{}, errors.New("info request shorter than 6 bytes")
	}
	n := int(binary.BigEndian.Uint32(data))
	if n > len(data)-6 {
		return nbdInfoRequest{}, errors.New("export name longer than the request")
	}
	req := nbdInfoRequest{name: string(data[4 : 4+n])}
	rest := data[4+n:]
	count := int(binary.BigEndian.Uint16(rest))
	if len(rest) != 2+2*count {
		return nbdInfoRequest{}, errors.New("info request count does not match its length")
	}
	for i := range count {
		req.infos = append(req.infos, binary.BigEndian.Uint16(rest[2+2*i:]))
	}
	return req, nil
}
