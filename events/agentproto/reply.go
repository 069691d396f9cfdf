package agentproto

// Reply is the control plane's answer to a report: the log sequences of
// the events the report appended (none when it changed nothing, e.g. a
// repeat), or a refusal.
type Reply struct {
	Seqs  []uint64 `json:"seqs,omitempty"`
	Error *Error   `json:"error,omitempty"`
}

// Error is a refusal, {"code", "message"}: in a Reply the code is one of
// the control plane's reply codes (invalid_argument, not_found,
// invalid_state, unauthorized, ...); in a VerifyReply, unavailable (try
// again later) or internal.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
