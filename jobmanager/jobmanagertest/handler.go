package jobmanagertest

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// StatePath is the inspection endpoint: GET answers a JSON summary of the simulator (see State).
const StatePath = "/_sim/state"

// route is a parsed request path.
type route struct {
	kind     RequestKind
	method   string // the one method the route allows
	mandator string
	action   string // submit
	batchID  string // status
}

func parseRoute(path string) route {
	if path == StatePath {
		return route{kind: KindState, method: http.MethodGet}
	}
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(parts) < 5 || parts[1] != "api" || parts[2] != "v2.0" || parts[3] != "jobs" {
		return route{kind: KindOther}
	}
	rt := route{mandator: parts[0]}
	switch rest := parts[4:]; {
	case len(rest) == 1 && (rest[0] == "create" || rest[0] == "update" || rest[0] == "delete"):
		rt.kind, rt.method, rt.action = KindSubmit, http.MethodPost, rest[0]
	case len(rest) == 1 && rest[0] == "batches":
		rt.kind, rt.method = KindList, http.MethodGet
	case len(rest) == 2 && rest[0] == "batches" && rest[1] != "":
		rt.kind, rt.method, rt.batchID = KindStatus, http.MethodGet, rest[1]
	default:
		return route{kind: KindOther}
	}
	return rt
}

// ServeHTTP answers one request; see Sim for the routes.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := parseRoute(r.URL.Path)
	rw := &statusWriter{ResponseWriter: w}
	rw.count = func(code int) { s.count(rt.kind, code) }
	defer func() {
		if rw.code != -1 {
			rw.count(rw.result())
		}
	}()

	if rt.kind == KindState {
		if r.Method != rt.method {
			methodNotAllowed(rw, rt.method)
			return
		}
		writeJSON(rw, http.StatusOK, s.State())
		return
	}
	if !s.delay(r) {
		rw.code = -1 // no answer
		rw.count(0)
		return
	}
	if !s.authorized(r) {
		rw.Header().Set("WWW-Authenticate", `Bearer realm="JobManager"`)
		writeError(rw, http.StatusUnauthorized, "missing or wrong bearer token")
		return
	}
	if rt.kind == KindOther {
		writeError(rw, http.StatusNotFound, fmt.Sprintf("no route %s", r.URL.Path))
		return
	}
	if !s.knownMandator(rt.mandator) {
		writeError(rw, http.StatusNotFound, fmt.Sprintf("unknown mandator %q", rt.mandator))
		return
	}
	if r.Method != rt.method {
		methodNotAllowed(rw, rt.method)
		return
	}
	switch rt.kind {
	case KindSubmit:
		s.serveSubmit(rw, r, rt)
	case KindStatus:
		s.serveStatus(rw, rt)
	case KindList:
		s.serveList(rw, rt)
	}
}

// delay waits for the injected latency; false when the request's context ended first.
func (s *Sim) delay(r *http.Request) bool {
	s.mu.Lock()
	d := s.faults.latency
	s.mu.Unlock()
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

func (s *Sim) authorized(r *http.Request) bool {
	if s.cfg.Token == "" {
		return true
	}
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), []byte(s.cfg.Token)) == 1
}

func (s *Sim) serveSubmit(w *statusWriter, r *http.Request, rt route) {
	s.mu.Lock()
	s.submits++
	s.mu.Unlock()

	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType,
			fmt.Sprintf("Content-Type %q is not application/json", r.Header.Get("Content-Type")))
		return
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), r.ContentLength, s.cfg.MaxBodyBytes)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", tooBig.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	jobs, err := decodeJobsString(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}

	s.mu.Lock()
	now := s.now()
	s.advance(now)
	s.receive(rt.mandator, rt.action, jobs)
	if s.faults.submit.take() {
		code, retryAfter := s.faults.submitCode, s.faults.retryAfter
		s.mu.Unlock()
		setRetryAfter(w, retryAfter)
		writeError(w, code, "injected fault")
		return
	}
	if s.chance(s.cfg.Random.SubmitFailRate) {
		s.mu.Unlock()
		setRetryAfter(w, time.Second)
		writeError(w, http.StatusServiceUnavailable, "injected random fault")
		return
	}
	b := s.accept(rt.mandator, rt.action, jobs, now)
	lose, mode := s.faults.lose.take(), s.faults.loseMode
	if !lose && s.chance(s.cfg.Random.LoseResponseRate) {
		lose, mode = true, s.cfg.Random.LoseMode
	}
	s.mu.Unlock()

	if lose {
		if mode == LoseByClose {
			w.abort()
			return
		}
		writeError(w, http.StatusBadGateway, "injected lost answer: upstream timed out")
		return
	}
	writeJSON(w, http.StatusAccepted, statusBody{BatchID: b.id, ImportStatus: StatusAwaitingLessonCreation})
}

// readBody reads r whole into a string, in one buffer sized for the request's Content-Length
// when it is known and within limit. The decoded jobs' strings share that buffer, so the body is
// neither copied again nor held twice.
func readBody(r io.Reader, contentLength, limit int64) (string, error) {
	var sb strings.Builder
	if contentLength > 0 && contentLength <= limit {
		sb.Grow(int(contentLength))
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	_, err := io.CopyBuffer(&sb, r, *buf) // neither side has WriteTo or ReadFrom: buf is used
	return sb.String(), err
}

// copyBufs are readBody's copy buffers.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (s *Sim) serveStatus(w *statusWriter, rt route) {
	s.mu.Lock()
	now := s.now()
	s.advance(now)
	if s.faults.status.take() {
		code := s.faults.statusCode
		s.mu.Unlock()
		writeError(w, code, "injected fault")
		return
	}
	if s.chance(s.cfg.Random.StatusFailRate) {
		s.mu.Unlock()
		setRetryAfter(w, time.Second)
		writeError(w, http.StatusServiceUnavailable, "injected random fault")
		return
	}
	b := s.byID[rt.batchID]
	if b == nil || b.mandator != rt.mandator || s.lagging(b, now) {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, fmt.Sprintf("batch %q not found", rt.batchID))
		return
	}
	body := b.statusBody()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Sim) serveList(w *statusWriter, rt route) {
	s.mu.Lock()
	now := s.now()
	s.advance(now)
	list := []statusBody{}
	if ms := s.state[rt.mandator]; ms != nil {
		for _, b := range ms.batches[ms.next:] {
			if !s.lagging(b, now) {
				list = append(list, b.statusBody())
			}
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, list)
}

// lagging reports whether b is still unknown to status requests. s.mu is held.
func (s *Sim) lagging(b *batch, now time.Time) bool {
	return now.Before(b.submittedAt.Add(s.cfg.NotFoundLag))
}

// statusBody is the JSON of a submit answer and of a status object. ErrorMessages is a string
// when there is one message and an array when there are several, as the contract's tolerances
// expect of the real server.
type statusBody struct {
	BatchID       string `json:"BatchId"`
	ImportStatus  string `json:"ImportStatus"`
	LessonCount   *int   `json:"LessonCount,omitempty"`
	ErrorMessages any    `json:"ErrorMessages,omitempty"`
}

func (b *batch) statusBody() statusBody {
	sb := statusBody{BatchID: b.id, ImportStatus: b.status}
	if b.status != StatusAwaitingLessonCreation {
		n := b.lessonCount
		sb.LessonCount = &n
	}
	switch len(b.errs) {
	case 0:
	case 1:
		sb.ErrorMessages = b.errs[0]
	default:
		sb.ErrorMessages = append([]string(nil), b.errs...)
	}
	return sb
}

func (s *Sim) count(kind RequestKind, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[RequestKey{Kind: kind, Code: code}]++
}

func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	if d <= 0 {
		return
	}
	secs := int((d + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "method not allowed, use "+allow)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		code, body = http.StatusInternalServerError, []byte(`{"error":"encoding answer"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

// statusWriter remembers the status code written, for Requests.
type statusWriter struct {
	http.ResponseWriter
	code  int // 0: nothing written yet (net/http answers 200); -1: no answer (already counted)
	count func(code int)
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) result() int {
	switch w.code {
	case 0:
		return http.StatusOK
	case -1:
		return 0
	}
	return w.code
}

// abort closes the connection without an answer: by hijacking it when the ResponseWriter allows,
// else by panicking with http.ErrAbortHandler, which net/http turns into a silent abort. The
// request is counted (as 0) before the connection closes, so a client that sees the close also
// sees the count in Requests.
func (w *statusWriter) abort() {
	w.code = -1
	w.count(0)
	if conn, _, err := http.NewResponseController(w.ResponseWriter).Hijack(); err == nil {
		_ = conn.Close()
		return
	}
	panic(http.ErrAbortHandler)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
