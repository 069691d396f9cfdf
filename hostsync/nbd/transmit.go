package nbd

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
)

// workersPerConn is how many requests of one connection run at once.
const workersPerConn = 4

type job struct {
	req     request
	payload []byte
	buf     *[]byte
}

// bufPool recycles request and reply payload buffers.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 128<<10); return &b }}

func getBuf(n int) *[]byte {
	bp := bufPool.Get().(*[]byte)
	if cap(*bp) < n {
		*bp = make([]byte, n)
	}
	*bp = (*bp)[:n]
	return bp
}

// transmit reads requests and runs them; it returns once every request
// read has been answered. Small writes, trims and zeroings without FUA run
// right in the reading goroutine, their replies gathered and sent together
// before it would wait for the client: most of a small request's cost is
// otherwise handing it to another goroutine and back. Reads, large writes,
// flushes and FUA requests (those that wait for the disk) run on a few
// workers, so they do not hold up the requests behind them.
func (c *conn) transmit(e *exportState) error {
	jobs := make(chan job, workersPerConn*2)
	var wg sync.WaitGroup
	for range workersPerConn {
		wg.Go(func() {
			for j := range jobs {
				c.handle(e.disk, j)
				c.flushReplies()
			}
		})
	}
	err := c.readRequests(e.disk, jobs)
	c.flushReplies()
	close(jobs)
	wg.Wait()
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// inlineMax is the largest write run in the reading goroutine.
const inlineMax = 64 << 10

// inline says whether a request runs in the reading goroutine.
func inline(r request) bool {
	if r.flags&nbdCmdFlagFUA != 0 {
		return false
	}
	switch r.typ {
	case nbdCmdWrite:
		return r.length <= inlineMax
	case nbdCmdTrim, nbdCmdWriteZeroes:
		return true
	}
	return false
}

// readRequests reads request headers and write payloads until the client
// disconnects or breaks the protocol. Before a read that would wait for
// the client it sends the replies gathered so far.
func (c *conn) readRequests(disk ExportDisk, jobs chan<- job) error {
	var hb [requestHeaderLen]byte
	for {
		if c.r.Buffered() < len(hb) {
			c.flushReplies()
		}
		if _, err := io.ReadFull(c.r, hb[:]); err != nil {
			return err
		}
		req, err := parseRequest(hb[:])
		if err != nil {
			return err
		}
		switch {
		case req.typ == nbdCmdDisc:
			return nil
		case req.typ == nbdCmdWrite && req.length > maxPayload:
			// The payload cannot be skipped safely: answer and hang up.
			c.reply(req, nil, nbdEINVAL, "write longer than the maximum block size")
			return fmt.Errorf("nbd: write of %d bytes above the maximum %d", req.length, maxPayload)
		case req.typ == nbdCmdWrite:
			if c.r.Buffered() < int(req.length) {
				c.flushReplies()
			}
			bp := getBuf(int(req.length))
			if _, err := io.ReadFull(c.r, *bp); err != nil {
				bufPool.Put(bp)
				return err
			}
			c.dispatch(disk, job{req: req, payload: *bp, buf: bp}, jobs)
		default:
			c.dispatch(disk, job{req: req}, jobs)
		}
	}
}

// dispatch runs j here or hands it to a worker.
func (c *conn) dispatch(disk ExportDisk, j job, jobs chan<- job) {
	if inline(j.req) {
		c.handle(disk, j)
		return
	}
	jobs <- j
}

// handle runs one request against the disk and answers it.
func (c *conn) handle(disk ExportDisk, j job) {
	if j.buf != nil {
		defer bufPool.Put(j.buf)
	}
	r := j.req
	if errno := r.check(disk.Size()); errno != 0 {
		c.reply(r, nil, errno, fmt.Sprintf("request type %d flags %#x, %d bytes at %d refused (export size %d)",
			r.typ, r.flags, r.length, r.offset, disk.Size()))
		return
	}
	fua := r.flags&nbdCmdFlagFUA != 0
	off, n := int64(r.offset), int64(r.length)
	var err error
	switch r.typ {
	case nbdCmdRead:
		bp := getBuf(int(n))
		defer bufPool.Put(bp)
		if _, err = disk.ReadAt(*bp, off); err == nil {
			c.reply(r, *bp, 0, "")
			return
		}
	case nbdCmdWrite:
		err = disk.WriteAt(j.payload, off, fua)
	case nbdCmdFlush:
		err = disk.Flush()
	case nbdCmdTrim:
		err = disk.Trim(off, n, fua)
	case nbdCmdWriteZeroes:
		err = disk.WriteZeroes(off, n, fua)
	}
	if err != nil {
		c.logger.Warn().Err(err).Uint16("type", r.typ).Int64("offset", off).Int64("length", n).Msg("nbd request failed")
		c.reply(r, nil, errnoOf(err), err.Error())
		return
	}
	c.reply(r, nil, 0, "")
}

// errnoOf is the NBD error a failed disk call is answered with: the
// ExportDisk contract's NBD_ESHUTDOWN for an error that matches
// syscall.ESHUTDOWN (a closed disk), NBD_EIO for any other. A request
// outside the export never reaches the disk (request.check answers it).
func errnoOf(err error) uint32 {
	if errors.Is(err, syscall.ESHUTDOWN) {
		return nbdESHUTDOWN
	}
	return nbdEIO
}

// reply queues a simple reply, or structured chunks when negotiated;
// flushReplies sends what is queued. A reply carrying data is sent at
// once (with what is queued before it), as its buffer goes back to the pool.
func (c *conn) reply(r request, data []byte, errno uint32, msg string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b := c.wbuf
	switch {
	case !c.structured:
		b = putSimpleReply(b, errno, r.cookie)
	case errno != 0:
		b = putErrorChunk(b, r.cookie, errno, msg)
	case len(data) > 0:
		b = putChunkHeader(b, nbdReplyFlagDone, nbdReplyTypeOffsetData, r.cookie, uint32(8+len(data)))
		b = append(b, byte(r.offset>>56), byte(r.offset>>48), byte(r.offset>>40), byte(r.offset>>32),
			byte(r.offset>>24), byte(r.offset>>16), byte(r.offset>>8), byte(r.offset))
	default:
		b = putChunkHeader(b, nbdReplyFlagDone, nbdReplyTypeNone, r.cookie, 0)
	}
	c.wbuf = b
	if errno == 0 && len(data) > 0 {
		c.sendLocked(data)
	}
}

// flushReplies sends the queued replies.
func (c *conn) flushReplies() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.sendLocked(nil)
}

// sendLocked sends the queued replies followed by data. A failed send means
// the connection is gone; the reader notices it.
func (c *conn) sendLocked(data []byte) {
	if len(c.wbuf) == 0 && len(data) == 0 {
		return
	}
	bufs := net.Buffers{c.wbuf}
	if len(data) > 0 {
		bufs = append(bufs, data)
	}
	if _, err := bufs.WriteTo(c.nc); err != nil {
		c.logger.Debug().Err(err).Msg("nbd reply not sent")
	}
	c.wbuf = c.wbuf[:0]
}
