package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// verifyTimeout is the least a verify waits for its reply: the source agent
// may wait up to two copy intervals for the replica to reach its latest
// cycle, then both sides hash.
const verifyTimeout = 6 * time.Minute

// verifyCommands is vm verify: compare the replica, re-hashed from its
// images, with the source's disks now (sr.cmd.vm.verify). Exit status 1
// when they differ.
func verifyCommands() []opCommand {
	return []opCommand{{noun: "vm", verb: "verify", args: []string{"vm"}, subject: "sr.cmd.vm.verify", custom: runVerify}}
}

// verifyReply is handlers.VerifyResult.
type verifyReply struct {
	VM        string `json:"vm"`
	Point     string `json:"point"`
	Equal     bool   `json:"equal"`
	Differing []struct {
		Disk   string `json:"disk"`
		Offset int64  `json:"offset"`
		Length int64  `json:"length"`
	} `json:"differing"`
}

func runVerify(o opOptions, req map[string]any, stdout io.Writer) error {
	nc, err := opConnect(o)
	if err != nil {
		return err
	}
	defer nc.Close()
	o.Timeout, o.SendOnce = max(o.Timeout, verifyTimeout), true
	raw, err := request(nc, o, "sr.cmd.vm.verify", req)
	if err != nil {
		return err
	}
	var rep verifyReply
	if err := json.Unmarshal(raw, &rep); err != nil {
		return fmt.Errorf("verify reply is not JSON: %w", err)
	}
	if o.JSON {
		err = printJSON(stdout, raw)
	} else {
		err = printVerify(stdout, rep)
	}
	if err != nil || rep.Equal {
		return err
	}
	return &refusedError{Code: "integrity_mismatch", Message: fmt.Sprintf("vm %s: the replica differs from the source at %s in %d ranges", rep.VM, rep.Point, len(rep.Differing))}
}

func printVerify(w io.Writer, rep verifyReply) error {
	if rep.Equal {
		_, err := fmt.Fprintf(w, "verified: equal at %s\n", rep.Point)
		return err
	}
	if _, err := fmt.Fprintf(w, "verified: DIFFERENT at %s\nDISK\tOFFSET\tLENGTH\n", rep.Point); err != nil {
		return err
	}
	for _, d := range rep.Differing {
		if _, err := fmt.Fprintf(w, "%s\t%d\t%d\n", d.Disk, d.Offset, d.Length); err != nil {
			return err
		}
	}
	return nil
}
