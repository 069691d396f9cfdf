package events

import "fmt"

// Kind is the kind of an aggregate, the second token of an event subject.
type Kind string

// The aggregate kinds, the second token of sr.evt.<kind>.<id>.<type>
// (docs/reference/events.md).
const (
	KindVault      Kind = "vault"
	KindSite       Kind = "site"
	KindHost       Kind = "host"
	KindCloud      Kind = "cloud"
	KindPolicy     Kind = "policy"
	KindPairing    Kind = "pairing"
	KindNetmap     Kind = "netmap"
	KindVM         Kind = "vm"
	KindPlan       Kind = "plan"
	KindAutomation Kind = "automation"
)

// Kinds lists every aggregate kind.
var Kinds = []Kind{KindVault, KindSite, KindHost, KindCloud, KindPolicy, KindPairing, KindNetmap, KindVM, KindPlan, KindAutomation}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool {
	for _, known := range Kinds {
		if k == known {
			return true
		}
	}
	return false
}

// SubjectPrefix is the first token of every event subject.
const SubjectPrefix = "sr.evt"

// Aggregate names one aggregate: its events share the subject prefix
// sr.evt.<kind>.<id>.
type Aggregate struct {
	Kind Kind
	ID   string
}

// VM names the VM aggregate id, and so on for the other kinds.
func VMAgg(id string) Aggregate      { return Aggregate{KindVM, id} }
func SiteAgg(id string) Aggregate    { return Aggregate{KindSite, id} }
func HostAgg(id string) Aggregate    { return Aggregate{KindHost, id} }
func CloudAgg(id string) Aggregate   { return Aggregate{KindCloud, id} }
func PolicyAgg(id string) Aggregate  { return Aggregate{KindPolicy, id} }
func PairingAgg(id string) Aggregate { return Aggregate{KindPairing, id} }
func NetmapAgg(id string) Aggregate  { return Aggregate{KindNetmap, id} }
func PlanAgg(id string) Aggregate    { return Aggregate{KindPlan, id} }

// Validate checks the kind is known and the id is a subject token.
func (a Aggregate) Validate() error {
	if !a.Kind.Valid() {
		return &TokenError{Field: "kind", Value: string(a.Kind)}
	}
	return ValidateToken("id", a.ID)
}

// Filter is the subject filter of all of the aggregate's events:
// sr.evt.<kind>.<id>.>
func (a Aggregate) Filter() string {
	return fmt.Sprintf("%s.%s.%s.>", SubjectPrefix, a.Kind, a.ID)
}

// Subject is the subject of one event of the aggregate:
// sr.evt.<kind>.<id>.<type>
func (a Aggregate) Subject(t Type) string {
	return fmt.Sprintf("%s.%s.%s.%s", SubjectPrefix, a.Kind, a.ID, t)
}

func (a Aggregate) String() string { return string(a.Kind) + "/" + a.ID }

// MaxTokenLen bounds ids so that subjects and file names stay sane.
const MaxTokenLen = 128

// ValidateToken checks that s is a non-empty subject token of letters,
// digits, '_' and '-', at most MaxTokenLen long. field names s in the error.
func ValidateToken(field, s string) error {
	if s == "" || len(s) > MaxTokenLen {
		return &TokenError{Field: field, Value: s}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '_' || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if !ok {
			return &TokenError{Field: field, Value: s}
		}
	}
	return nil
}

// ParseSubject splits an event subject into its aggregate and type.
func ParseSubject(subject string) (Aggregate, Type, error) {
	var toks [5]string
	n, start := 0, 0
	for i := 0; i <= len(subject); i++ {
		if i == len(subject) || subject[i] == '.' {
			if n == len(toks) {
				return Aggregate{}, "", fmt.Errorf("subject %q: too many tokens: %w", subject, ErrInvalidToken)
			}
			toks[n] = subject[start:i]
			n++
			start = i + 1
		}
	}
	if n != 5 || toks[0]+"."+toks[1] != SubjectPrefix {
		return Aggregate{}, "", fmt.Errorf("subject %q is not sr.evt.<kind>.<id>.<type>: %w", subject, ErrInvalidToken)
	}
	agg := Aggregate{Kind: Kind(toks[2]), ID: toks[3]}
	if err := agg.Validate(); err != nil {
		return Aggregate{}, "", fmt.Errorf("subject %q: %w", subject, err)
	}
	if err := ValidateToken("type", toks[4]); err != nil {
		return Aggregate{}, "", fmt.Errorf("subject %q: %w", subject, err)
	}
	return agg, Type(toks[4]), nil
}
