package events_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siterecovery/siterecovery/events"
)

func TestValidateToken(t *testing.T) {
	cases := []struct {
		value string
		ok    bool
	}{
		{"web01", true},
		{"WEB_01-a", true},
		{"0", true},
		{strings.Repeat("a", events.MaxTokenLen), true},
		{strings.Repeat("a", events.MaxTokenLen+1), false},
		{"", false},
		{"web.01", false},
		{"web*", false},
		{">", false},
		{"web 01", false},
		{"web\t01", false},
		{"wéb", false},
		{"web/01", false},
		{"web:01", false},
		{"$SYS", false},
	}
	for _, tc := range cases {
		err := events.ValidateToken("id", tc.value)
		if tc.ok {
			require.NoError(t, err, "%q", tc.value)
			continue
		}
		require.ErrorIs(t, err, events.ErrInvalidToken, "%q", tc.value)
		var tokErr *events.TokenError
		require.ErrorAs(t, err, &tokErr)
		require.Equal(t, "id", tokErr.Field)
		require.Contains(t, err.Error(), "id ")
	}
}

func TestParseSubject(t *testing.T) {
	ok := []struct {
		subject string
		agg     events.Aggregate
		typ     events.Type
	}{
		{"sr.evt.vm.web01.failover_started", events.VMAgg("web01"), events.FailoverStarted},
		{"sr.evt.site.primary.site_registered", events.SiteAgg("primary"), events.SiteRegistered},
		{"sr.evt.automation.a-1.whatever", events.Aggregate{Kind: events.KindAutomation, ID: "a-1"}, "whatever"},
	}
	for _, tc := range ok {
		agg, typ, err := events.ParseSubject(tc.subject)
		require.NoError(t, err, tc.subject)
		require.Equal(t, tc.agg, agg)
		require.Equal(t, tc.typ, typ)
		require.Equal(t, tc.subject, agg.Subject(typ), "Subject is the inverse of ParseSubject")
	}
	bad := []string{
		"", "sr", "sr.evt", "sr.evt.vm", "sr.evt.vm.web01", "sr.evt.vm.web01.",
		"sr.evt.vm.web01.a.b", "sr.cmd.vm.web01.enable", "xx.evt.vm.web01.vm_created",
		"sr.evt.disk.d1.vm_created", "sr.evt.vm.*.vm_created", "sr.evt.vm.web01.>",
		"sr.evt..web01.vm_created", "sr.evt.vm..vm_created", ".sr.evt.vm.web01",
	}
	for _, s := range bad {
		_, _, err := events.ParseSubject(s)
		require.ErrorIs(t, err, events.ErrInvalidToken, "%q", s)
	}
}

func TestAggregate(t *testing.T) {
	agg := events.VMAgg("web01")
	require.NoError(t, agg.Validate())
	require.Equal(t, "sr.evt.vm.web01.>", agg.Filter())
	require.Equal(t, "sr.evt.vm.web01.vm_created", agg.Subject(events.VMCreated))
	require.Equal(t, "vm/web01", agg.String())
	require.ErrorIs(t, events.Aggregate{Kind: "disk", ID: "x"}.Validate(), events.ErrInvalidToken)
	require.ErrorIs(t, events.VMAgg("a.b").Validate(), events.ErrInvalidToken)
	for _, typ := range events.Types() {
		require.True(t, typ.Kind().Valid(), "type %s has kind %q", typ, typ.Kind())
		require.NoError(t, events.ValidateToken("type", string(typ)), "type %s is a subject token", typ)
	}
	require.Equal(t, "c:vm:web01:2", events.MsgID("c", agg, 2))
}
