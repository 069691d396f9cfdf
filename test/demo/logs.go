package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// LogFile is the demo's log file in its data directory: the control
// plane's and the agents' log lines (JSON), the detail the narrative
// leaves out.
const LogFile = "demo.log"

// LogPath is the path of the demo's log file.
func (d *Demo) LogPath() string { return filepath.Join(d.cfg.Data, LogFile) }

// runLogged runs the demo with the components logging to the log file
// (when Config.LogTo is set) and says where it is.
func (d *Demo) runLogged(ctx context.Context) error {
	if d.cfg.LogTo == nil {
		return d.run(ctx)
	}
	if err := os.MkdirAll(d.cfg.Data, 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(d.LogPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("demo log: %w", err)
	}
	d.cfg.Logger = d.cfg.LogTo(f)
	d.logged = true
	d.printf("logs of the control plane and the agents: %s\n", d.LogPath())
	return errors.Join(d.run(ctx), f.Close())
}

// endLog says again where the logs are, with how many warnings and
// errors they hold, and where the data is when the demo failed.
func (d *Demo) endLog(failed error) {
	if !d.logged {
		return
	}
	n, err := countLevels(d.LogPath())
	if err != nil {
		d.printf("logs of the control plane and the agents: %s (%v)\n", d.LogPath(), err)
	} else {
		d.printf("logs of the control plane and the agents: %s (%d lines: %d warnings, %d errors)\n",
			d.LogPath(), n.lines, n.warn, n.errors)
	}
	if failed != nil {
		d.printf("data kept for a look: %s\n", d.cfg.Data)
	}
}

// levelCounts counts a log file's lines by level.
type levelCounts struct{ lines, warn, errors int }

func countLevels(path string) (levelCounts, error) {
	var n levelCounts
	f, err := os.Open(path)
	if err != nil {
		return n, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			Level string `json:"level"`
		}
		n.lines++
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		switch l.Level {
		case "warn":
			n.warn++
		case "error", "fatal", "panic":
			n.errors++
		}
	}
	return n, sc.Err()
}

// removeAllBut removes everything in dir except the file keep.
func removeAllBut(dir, keep string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if e.Name() != keep {
			errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
		}
	}
	return errors.Join(errs...)
}
