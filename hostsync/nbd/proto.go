package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The NBD protocol's constants this server and client use (fixed newstyle
// negotiation, simple and structured replies), with the values the NBD
// project's protocol document (doc/proto.md of github.com/NetworkBlockDevice/nbd)
// gives them. Each is named after the document's name for it: NBD_OPT_GO is
// nbdOptGo, NBD_REPLY_TYPE_OFFSET_DATA is nbdReplyTypeOffsetData. The
// handshake flags (NBD_FLAG_FIXED_NEWSTYLE, NBD_FLAG_NO_ZEROES) have the
// values of the client flags NBD_FLAG_C_FIXED_NEWSTYLE and
// NBD_FLAG_C_NO_ZEROES, which the client sends with the same constants.
const (
	// Magic numbers: the greeting (ASCII "NBDMAGIC", then "IHAVEOPT", which
	// also starts every option), option replies, requests, simple and
	// structured replies.
	nbdMagic                = 0x4e42444d41474943
	nbdOptMagic             = 0x49484156454f5054
	nbdRepMagic             = 0x3e889045565a9
	nbdRequestMagic         = 0x25609513
	nbdSimpleReplyMagic     = 0x67446698
	nbdStructuredReplyMagic = 0x668e33ef

	// Handshake flags.
	nbdFlagFixedNewstyle = 1 << 0
	nbdFlagNoZeroes      = 1 << 1

	// Options (NBD_OPT_*) and option reply types (NBD_REP_*).
	nbdOptExportName      = 1
	nbdOptAbort           = 2
	nbdOptList            = 3
	nbdOptInfo            = 6
	nbdOptGo              = 7
	nbdOptStructuredReply = 8

	nbdRepAck        = 1
	nbdRepServer     = 2
	nbdRepInfo       = 3
	nbdRepErrUnsup   = 1<<31 | 1
	nbdRepErrInvalid = 1<<31 | 3
	nbdRepErrUnknown = 1<<31 | 6

	// Information types of NBD_REP_INFO (NBD_INFO_*).
	nbdInfoExport    = 0
	nbdInfoName      = 1
	nbdInfoBlockSize = 3

	// Transmission flags (NBD_FLAG_*).
	nbdFlagHasFlags        = 1 << 0
	nbdFlagSendFlush       = 1 << 2
	nbdFlagSendFUA         = 1 << 3
	nbdFlagSendTrim        = 1 << 5
	nbdFlagSendWriteZeroes = 1 << 6
	nbdFlagCanMultiConn    = 1 << 8

	// Commands (NBD_CMD_*) and their flags (NBD_CMD_FLAG_*).
	nbdCmdRead        = 0
	nbdCmdWrite       = 1
	nbdCmdDisc        = 2
	nbdCmdFlush       = 3
	nbdCmdTrim        = 4
	nbdCmdWriteZeroes = 6

	nbdCmdFlagFUA    = 1 << 0
	nbdCmdFlagNoHole = 1 << 1

	// Structured reply chunks (NBD_REPLY_FLAG_*, NBD_REPLY_TYPE_*).
	nbdReplyFlagDone       = 1 << 0
	nbdReplyTypeNone       = 0
	nbdReplyTypeOffsetData = 1
	nbdReplyTypeError      = 1<<15 | 1

	// Error values (NBD_E*) of replies.
	nbdEPERM     = 1
	nbdEIO       = 5
	nbdEINVAL    = 22
	nbdENOSPC    = 28
	nbdENOTSUP   = 95
	nbdESHUTDOWN = 108
)

// transmitFlags are the transmission flags every export advertises.
// CAN_MULTI_CONN holds because a flush syncs the whole disk, so it covers
// writes completed on every connection.
const transmitFlags = nbdFlagHasFlags | nbdFlagSendFlush | nbdFlagSendFUA |
	nbdFlagSendTrim | nbdFlagSendWriteZeroes | nbdFlagCanMultiConn

// Limits. maxPayload is the largest read or write accepted (advertised as
// the maximum block size); maxOptionLen bounds option data.
const (
	maxPayload       = 32 << 20
	preferredBlock   = 4096
	maxOptionLen     = 64 << 10
	requestHeaderLen = 28
)

var errBadMagic = errors.New("nbd: bad request magic")

// request is one transmission-phase request header.
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	offset uint64
	length uint32
}

// parseRequest decodes a 28-byte request header.
func parseRequest(b []byte) (request, error) {
	if len(b) < requestHeaderLen {
		return request{}, fmt.Errorf("nbd: short request header (%d bytes)", len(b))
	}
	if binary.BigEndian.Uint32(b) != nbdRequestMagic {
		return request{}, errBadMagic
	}
	return request{
		flags:  binary.BigEndian.Uint16(b[4:]),
		typ:    binary.BigEndian.Uint16(b[6:]),
		cookie: binary.BigEndian.Uint64(b[8:]),
		offset: binary.BigEndian.Uint64(b[16:]),
		length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

// check validates a request against the export size: it returns 0 or the
// NBD errno to answer with.
func (r request) check(size int64) uint32 {
	mask, ok := allowedFlags(r.typ)
	if !ok || r.flags&^mask != 0 {
		return nbdEINVAL
	}
	if r.typ == nbdCmdFlush {
		return 0
	}
	if (r.typ == nbdCmdRead || r.typ == nbdCmdWrite) && r.length > maxPayload {
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

// allowedFlags gives the command flags a command type accepts, and
// whether the type is served at all.
func allowedFlags(typ uint16) (uint16, bool) {
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
	b = binary.BigEndian.AppendUint32(b, nbdSimpleReplyMagic)
	b = binary.BigEndian.AppendUint32(b, errno)
	return binary.BigEndian.AppendUint64(b, cookie)
}

func putChunkHeader(b []byte, flags, typ uint16, cookie uint64, length uint32) []byte {
	b = binary.BigEndian.AppendUint32(b, nbdStructuredReplyMagic)
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
	b = binary.BigEndian.AppendUint64(b, nbdRepMagic)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, typ)
	return binary.BigEndian.AppendUint32(b, uint32(length))
}

// infoRequest is the payload of NBD_OPT_INFO and NBD_OPT_GO.
type infoRequest struct {
	name  string
	infos []uint16
}

func parseInfoRequest(data []byte) (infoRequest, error) {
	if len(data) < 6 {
		return infoRequest{}, errors.New("info request shorter than 6 bytes")
	}
	n := int(binary.BigEndian.Uint32(data))
	if n > len(data)-6 {
		return infoRequest{}, errors.New("export name longer than the request")
	}
	req := infoRequest{name: string(data[4 : 4+n])}
	rest := data[4+n:]
	count := int(binary.BigEndian.Uint16(rest))
	if len(rest) != 2+2*count {
		return infoRequest{}, errors.New("info request count does not match its length")
	}
	for i := range count {
		req.infos = append(req.infos, binary.BigEndian.Uint16(rest[2+2*i:]))
	}
	return req, nil
}
