package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

func mustOpenAutomations(t *testing.T, log events.Log) *Automations {
	t.Helper()
	a := NewAutomations(log, zerolog.Nop())
	require.NoError(t, a.Open(context.Background()))
	t.Cleanup(func() {
		require.NoError(t, a.Close())
		require.NoError(t, a.Close(), "Close twice")
	})
	return a
}

func appendRule(t *testing.T, log events.Log, name string, d events.Data) uint64 {
	t.Helper()
	ctx := context.Background()
	agg := events.Aggregate{Kind: events.KindAutomation, ID: name}
	recs, err := log.Load(ctx, agg)
	require.NoError(t, err)
	var last uint64
	if len(recs) > 0 {
		last = recs[len(recs)-1].Seq
	}
	res, err := log.Append(ctx, agg, last, events.Meta{CommandID: fmt.Sprintf("c%d", len(recs))}, d)
	require.NoError(t, err)
	return res.Last()
}

func TestAutomationsRulesInForceAtEachEvent(t *testing.T) {
	log := events.NewMemLog()
	a := mustOpenAutomations(t, log)
	rule := events.AutomationAddedData{Name: "r", On: events.FailoverCompleted, Exec: "true", Timeout: events.Duration(time.Minute)}
	added := appendRule(t, log, "r", rule)
	ran := appendRule(t, log, "r", events.AutomationExecutedData{Name: "r", EventSeq: added + 10, ExitCode: 2, Error: "exit status 2"})
	removed := appendRule(t, log, "r", events.AutomationRemovedData{Name: "r"})
	again := appendRule(t, log, "r", rule)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, a.WaitFor(ctx, again))

	require.Empty(t, a.RulesAt(added), "a rule does not run for its own addition")
	require.Len(t, a.RulesAt(ran), 1)
	require.Empty(t, a.RulesAt(removed))
	require.Empty(t, a.RulesAt(again))
	require.Equal(t, []events.AutomationAddedData{rule}, a.RulesAt(again+1))

	res, err := a.Query(ctx, AutomationsQuery, json.RawMessage(fmt.Sprintf(`{"min_seq": %d}`, again)))
	require.NoError(t, err)
	list := res.([]AutomationRule)
	require.Len(t, list, 1)
	require.Equal(t, again, list[0].AddedSeq)
	require.Nil(t, list[0].LastRun, "the run of the removed rule is not the new rule's")
}

func TestAutomationsQueryShowsTheLastRun(t *testing.T) {
	log := events.NewMemLog()
	a := mustOpenAutomations(t, log)
	appendRule(t, log, "b", events.AutomationAddedData{Name: "b", On: events.VMCreated, Exec: "true"})
	appendRule(t, log, "a", events.AutomationAddedData{Name: "a", On: events.FailoverCompleted, VM: "web01", Exec: "true"})
	appendRule(t, log, "a", events.AutomationExecutedData{Name: "a", EventSeq: 7, ExitCode: 0})
	last := appendRule(t, log, "a", events.AutomationExecutedData{Name: "a", EventSeq: 5, ExitCode: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := a.Query(ctx, AutomationsQuery, json.RawMessage(fmt.Sprintf(`{"min_seq": %d}`, last)))
	require.NoError(t, err)
	raw, err := json.Marshal(res)
	require.NoError(t, err)
	var got []map[string]any
	require.NoError(t, json.Unmarshal(raw, &got))
	require.Len(t, got, 2)
	require.Equal(t, "a", got[0]["name"])
	require.Equal(t, "web01", got[0]["vm"])
	run := got[0]["last_run"].(map[string]any)
	require.EqualValues(t, 7, run["event_seq"], "the latest event's run, whatever the order of the outcomes")
	require.Equal(t, "b", got[1]["name"])
	require.Nil(t, got[1]["last_run"])

	_, err = a.Query(ctx, AutomationsQuery, json.RawMessage(`{"vm": "web01"}`))
	require.ErrorIs(t, err, events.ErrInvalidArgument)
	_, err = a.Query(ctx, "vms", nil)
	require.ErrorIs(t, err, events.ErrInvalidArgument)
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	require.ErrorIs(t, a.WaitFor(short, last+100), context.DeadlineExceeded)
}
