package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/siterecovery/siterecovery/cmd/siterecovery/resend"
	"github.com/siterecovery/siterecovery/handlers"
)

// The API forwards; it decides nothing. POST /api/v1/<noun>/<verb> with a
// JSON object body is the request sr.cmd.<noun>.<verb>; GET
// /api/v1/<query>?k=v is sr.q.<query> with {"k": "v"}. The reply's body is
// passed on as it is; an error reply's code sets the HTTP status.

// apiStatus is the HTTP status of each error code of the service.
var apiStatus = map[string]int{
	handlers.CodeInvalidArgument: http.StatusBadRequest,
	handlers.CodeNotFound:        http.StatusNotFound,
	handlers.CodeAlreadyExists:   http.StatusConflict,
	handlers.CodeConflict:        http.StatusConflict,
	handlers.CodeInvalidState:    http.StatusConflict,
	handlers.CodeUnauthorized:    http.StatusForbidden,
	handlers.CodeUnavailable:     http.StatusServiceUnavailable,
}

// apiNumericParams are the query parameters sent as JSON numbers.
var apiNumericParams = []string{"limit", "min_seq", "after_seq"}

// commandSubjects are the commands the API forwards: the operator's, not
// the agents' (sr.cmd.agent.<host>.*).
var commandSubjects = append(handlers.CommandSubjects(), handlers.AutomationAddSubject, handlers.AutomationRemoveSubject)

// apiQueries are the queries the API forwards: the service's and the
// automation rules'.
var apiQueries = append(slices.Clone(handlers.Queries), "automations")

func (a *httpAPI) index(w http.ResponseWriter, _ *http.Request) {
	var cmds []string
	for _, s := range commandSubjects {
		cmds = append(cmds, strings.ReplaceAll(strings.TrimPrefix(s, handlers.CommandPrefix), ".", "/"))
	}
	slices.Sort(cmds)
	writeJSON(w, http.StatusOK, map[string]any{
		"commands": cmds, "queries": apiQueries, "stream": "/api/v1/stream", "metrics": "/metrics",
	})
}

func (a *httpAPI) command(w http.ResponseWriter, r *http.Request) {
	noun, verb := r.PathValue("noun"), strings.ReplaceAll(r.PathValue("verb"), "-", "_")
	subject := handlers.CommandPrefix + noun + "." + verb
	if !slices.Contains(commandSubjects, subject) {
		a.fail(w, r, apiErrorf(http.StatusNotFound, handlers.CodeNotFound,
			"no command %s %s (GET /api/v1/ lists the commands)", noun, verb))
		return
	}
	body, err := readCommandBody(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.forward(w, r, subject, body)
}

// withCommandID gives a command without a command_id one, so that the
// resends of forward are one command, applied once.
func withCommandID(obj map[string]json.RawMessage) ([]byte, error) {
	if _, ok := obj["command_id"]; !ok {
		id, err := json.Marshal(resend.NewCommandID("http-"))
		if err != nil {
			return nil, err
		}
		obj["command_id"] = id
	}
	return json.Marshal(obj)
}

// readCommandBody reads a command's body: a JSON object (empty means {}),
// at most MaxBody bytes.
func readCommandBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, apiErrorf(http.StatusRequestEntityTooLarge, codeTooLarge, "request body larger than %d bytes", tooLarge.Limit)
	case err != nil:
		return nil, apiErrorf(http.StatusBadRequest, handlers.CodeInvalidArgument, "reading the request body: %v", err)
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return withCommandID(map[string]json.RawMessage{})
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, apiErrorf(http.StatusBadRequest, handlers.CodeInvalidArgument, "the request body must be a JSON object: %s", jsonProblem(err))
	}
	return withCommandID(obj)
}

func jsonProblem(err error) string {
	if err == nil {
		return "got null"
	}
	return err.Error()
}

func (a *httpAPI) query(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("query")
	if !slices.Contains(apiQueries, name) {
		a.fail(w, r, apiErrorf(http.StatusNotFound, handlers.CodeNotFound,
			"no query %q (queries: %s)", name, strings.Join(apiQueries, ", ")))
		return
	}
	params, err := queryParams(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.forward(w, r, handlers.QueryPrefix+name, params)
}

// queryParams turns the query string into the query's JSON params: one
// value per key, numbers for apiNumericParams, strings for the rest.
func queryParams(r *http.Request) ([]byte, error) {
	values, err := urlQuery(r)
	if err != nil {
		return nil, err
	}
	params := map[string]any{}
	for k, vs := range values {
		if len(vs) != 1 {
			return nil, apiErrorf(http.StatusBadRequest, handlers.CodeInvalidArgument, "query parameter %q given %d times", k, len(vs))
		}
		params[k] = vs[0]
		if slices.Contains(apiNumericParams, k) {
			n, err := strconv.ParseUint(vs[0], 10, 64)
			if err != nil {
				return nil, apiErrorf(http.StatusBadRequest, handlers.CodeInvalidArgument, "query parameter %s=%q is not a non-negative integer", k, vs[0])
			}
			params[k] = n
		}
	}
	return json.Marshal(params)
}

func urlQuery(r *http.Request) (url.Values, error) {
	values, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, apiErrorf(http.StatusBadRequest, handlers.CodeInvalidArgument, "query string: %v", err)
	}
	return values, nil
}

// forward sends body to subject, again while no control plane answers
// (package resend), and writes the reply: the body as it is, with the
// status of its error code when it is an error reply.
func (a *httpAPI) forward(w http.ResponseWriter, r *http.Request, subject string, body []byte) {
	msg, err := resend.Request(r.Context(), a.nc, subject, body, resend.Options{Timeout: apiRequestTimeout})
	if err != nil {
		a.fail(w, r, apiErrorf(http.StatusServiceUnavailable, handlers.CodeUnavailable, "%s: %v", subject, requestProblem(err)))
		return
	}
	code := msg.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		writeRaw(w, http.StatusOK, msg.Data)
		return
	}
	status, ok := apiStatus[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	a.logger.Debug().Str(logHTTPPath, r.URL.Path).Int(logHTTPStatus, status).Str(logHTTPCode, code).Msg("request refused")
	if json.Valid(msg.Data) && len(bytes.TrimSpace(msg.Data)) > 0 {
		writeRaw(w, status, msg.Data)
		return
	}
	writeError(w, &apiError{Status: status, Code: code, Message: msg.Header.Get(micro.ErrorHeader)})
}

func requestProblem(err error) string {
	var un *resend.Unanswered
	switch {
	case errors.As(err, &un):
		return strings.TrimPrefix(un.Error(), un.Subject+": ")
	case errors.Is(err, nats.ErrNoResponders):
		return "no control plane answers (the siterecovery service is not running)"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return "the control plane did not answer in time"
	}
	return err.Error()
}

// unknownRoute answers any /api/ request no route takes: 405 for a known
// path with the wrong method, else 404.
func (a *httpAPI) unknownRoute(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v1/"), "/")
	switch {
	case !strings.HasPrefix(r.URL.Path, "/api/v1/"):
	case len(parts) == 1 && parts[0] != "":
		w.Header().Set("Allow", "GET")
		a.fail(w, r, apiErrorf(http.StatusMethodNotAllowed, codeMethodNotAllowed, "%s %s: queries are GET", r.Method, r.URL.Path))
		return
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		w.Header().Set("Allow", "POST")
		a.fail(w, r, apiErrorf(http.StatusMethodNotAllowed, codeMethodNotAllowed, "%s %s: commands are POST", r.Method, r.URL.Path))
		return
	}
	a.fail(w, r, apiErrorf(http.StatusNotFound, handlers.CodeNotFound, "no route %s %s (GET /api/v1/ lists the commands and queries)", r.Method, r.URL.Path))
}

// fail writes err, an *apiError or any other error (503 unavailable), and
// logs it: this is where the API handles its errors.
func (a *httpAPI) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{Status: http.StatusServiceUnavailable, Code: handlers.CodeUnavailable, Message: err.Error()}
	}
	ev := a.logger.Debug()
	if ae.Status >= http.StatusInternalServerError {
		ev = a.logger.Warn()
	}
	ev.Str(logHTTPPath, r.URL.Path).Int(logHTTPStatus, ae.Status).Str(logHTTPCode, ae.Code).Msg(ae.Message)
	writeError(w, ae)
}

func writeError(w http.ResponseWriter, e *apiError) {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message = e.Code, e.Message
	writeJSON(w, e.Status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	raw, err := json.Marshal(v)
	if err != nil { // only our own types are written: a bug
		status, raw = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"encoding the answer failed"}}`)
	}
	writeRaw(w, status, raw)
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	// A failed write means the client went away: nobody is left to tell.
	_, _ = w.Write(append(slices.Clip(body), '\n'))
}
