package handlers

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/siterecovery/siterecovery/events"
)

// query answers sr.q.<name>: params is a JSON object; after_seq, when
// present, makes the query wait until the read model has applied that log
// sequence (read-your-writes after a command) and is not passed on.
func (s *Service) query(ctx context.Context, name string, body []byte) (any, error) {
	if s.rm == nil {
		return nil, fmt.Errorf("query %s: no read model: %w", name, ErrUnavailable)
	}
	params := map[string]json.RawMessage{}
	if err := decodeRequest(body, &params); err != nil {
		return nil, err
	}
	if raw, ok := params["after_seq"]; ok {
		var seq uint64
		if err := json.Unmarshal(raw, &seq); err != nil {
			return nil, fmt.Errorf("after_seq %s: %w", raw, events.ErrInvalidArgument)
		}
		delete(params, "after_seq")
		if err := s.rm.WaitFor(ctx, seq); err != nil {
			return nil, fmt.Errorf("query %s: waiting for sequence %d: %w", name, seq, err)
		}
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("query %s: %v: %w", name, err, events.ErrInvalidArgument)
	}
	return s.rm.Query(ctx, name, raw)
}
