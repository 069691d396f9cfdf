package projections

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

	"github.com/siterecovery/siterecovery/events"
)

// Log field names.
const (
	fieldCheckpoint = "checkpoint"
	fieldPath       = "path"
	fieldEvents     = "events"
	fieldReason     = "reason"
	fieldLogLast    = "log_last_seq"
)

// defaultBatch is the most events the runner applies in one transaction
// (when it is behind; it applies what the log has when it is not).
const defaultBatch = 4096

// openTimeout bounds the wait for another process's lock on the file.
const openTimeout = 5 * time.Second

// Store follows the event log and keeps read models in one bbolt file. Its
// methods are safe for concurrent use; queries read a consistent snapshot
// while the runner writes.
type Store struct {
	db     *bolt.DB
	log    events.Log
	logger zerolog.Logger
	now    func() time.Time

	// afterCommit, a test hook, runs after each committed batch; an error
	// stops the runner as a crash would.
	afterCommit func(seq uint64) error
	batchSize   int
	// cache is the runner's memory across batches.
	cache *runnerCache

	checkpoint atomic.Uint64
	closed     atomic.Bool
	// catchUp is the lag watch's last verdict (lag.go), nil before it.
	catchUp atomic.Pointer[catchUp]
	lagDone chan struct{}

	mu      sync.Mutex
	changed chan struct{} // closed and replaced after each commit and when the runner stops
	runErr  error
	stopped bool

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// option changes a Store before its runner starts (tests only).
type option func(*Store)

// Open opens or creates the bbolt file at path (cmd passes
// <data>/projections.db) and starts the runner, which follows log from the
// stored checkpoint + 1 until Close. ctx bounds the opening only. logger is
// used as given (the caller names the component).
func Open(ctx context.Context, path string, log events.Log, logger zerolog.Logger) (*Store, error) {
	return open(ctx, path, log, logger)
}

func open(ctx context.Context, path string, log events.Log, logger zerolog.Logger, opts ...option) (*Store, error) {
	if log == nil || path == "" {
		return nil, fmt.Errorf("open projections: a path and a log are required: %w", events.ErrInvalidArgument)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open projections %s: %w", path, err)
	}
	// The freelist is rebuilt at open rather than written at every commit
	// (bbolt's advice for write-heavy files).
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("open projections %s: %w", path, err)
	}
	s := &Store{
		db: db, log: log, now: time.Now, batchSize: defaultBatch,
		logger:  logger,
		changed: make(chan struct{}), done: make(chan struct{}), lagDone: make(chan struct{}), cache: newRunnerCache(),
	}
	for _, o := range opts {
		o(s)
	}
	cp, err := s.init()
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	s.checkpoint.Store(cp)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.logger.Info().Str(fieldPath, path).Uint64(fieldCheckpoint, cp).Msg("projections opened")
	go s.run(runCtx)
	go s.watchLag(runCtx)
	return s, nil
}

// FileFormat is the layout of projections.db: its buckets, their keys and
// their values (docs/reference/files.md), stamped in the meta bucket under
// "format". The file is a cache of the log: Open empties a file of another
// format and rebuilds the read models from the log, so a layout this build
// does not know is never misread. A file with no stamp was written before
// the stamp existed, in format 1's layout.
const FileFormat = 1

var keyFormat = []byte("format")

// init creates the buckets (and the counts of a file that has none),
// empties a file of another format (FileFormat) and returns the checkpoint
// to resume from.
func (s *Store) init() (uint64, error) {
	var cp uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := s.checkFormat(tx); err != nil {
			return err
		}
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		if err := tx.Bucket(bucketMeta).Put(keyFormat, u64(FileFormat)); err != nil {
			return fmt.Errorf("stamp format: %w", err)
		}
		cp = readMeta(tx, keyCheckpoint)
		return initCounts(tx)
	})
	return cp, err
}

// checkFormat deletes every bucket of a file stamped with another format
// than FileFormat, so that the read models are rebuilt from the log.
func (s *Store) checkFormat(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return nil
	}
	v := meta.Get(keyFormat)
	if v == nil || (len(v) == 8 && binary.BigEndian.Uint64(v) == FileFormat) {
		return nil
	}
	s.logger.Warn().Hex("format", v).Int("want", FileFormat).Str("path", s.db.Path()).
		Msg("read models of another format: rebuilding them from the log")
	var names [][]byte
	if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		names = append(names, append([]byte(nil), name...))
		return nil
	}); err != nil {
		return err
	}
	for _, name := range names {
		if err := tx.DeleteBucket(name); err != nil {
			return fmt.Errorf("drop bucket %s: %w", name, err)
		}
	}
	return nil
}

// Close stops the runner, waits for it and closes the file. It is safe to
// call twice.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.cancel()
		<-s.done
		<-s.lagDone
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// Checkpoint is the sequence of the last event applied to the read models.
func (s *Store) Checkpoint() uint64 { return s.checkpoint.Load() }

// Err is the runner's fatal error if it stopped on one (an event that does
// not decode, an event out of order, a failed write), nil otherwise.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runErr
}

// WaitFor returns nil once Checkpoint() >= seq: a query after it sees every
// event up to seq. It returns early with ctx's error, with an error
// wrapping ErrStopped if the runner stopped on a fatal error, or ErrClosed.
func (s *Store) WaitFor(ctx context.Context, seq uint64) error {
	for {
		s.mu.Lock()
		changed, runErr, stopped := s.changed, s.runErr, s.stopped
		s.mu.Unlock()
		cp := s.Checkpoint()
		switch {
		case cp >= seq:
			return nil
		case runErr != nil:
			return fmt.Errorf("wait for event %d at checkpoint %d: %w: %w", seq, cp, ErrStopped, runErr)
		case stopped:
			return fmt.Errorf("wait for event %d at checkpoint %d: %w", seq, cp, ErrClosed)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for event %d at checkpoint %d: %w", seq, cp, ctx.Err())
		}
	}
}

// committed publishes a new checkpoint and wakes the waiters.
func (s *Store) committed(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkpoint.Store(seq)
	close(s.changed)
	s.changed = make(chan struct{})
}

// stop records why the runner ended (nil: Close) and wakes the waiters.
func (s *Store) stop(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runErr, s.stopped = err, true
	close(s.changed)
	s.changed = make(chan struct{})
}

// view runs fn in a read transaction, unless the store is closed.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	err := s.db.View(fn)
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}
