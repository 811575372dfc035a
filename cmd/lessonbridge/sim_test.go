package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The vendor guide's two curl examples, as they stand; only <host>, <mandator>, <token> and
// <batchId> are filled in.
const (
	simGuideCreateBody = `[
{
"JobID": "job-20251223-001",
"LektionList": [
{
"LektionId": "L-0001",
"Beginn": "2025-12-23T08:00:00Z",
"Ende": "2025-12-23T10:00:00Z",
"RessourceName": "Raum 1.01"
}
]
}
]`
	simToken = "s3cret-guide-token"
)

var simListening = regexp.MustCompile(`jobmanager-sim listening on (http://\S+)`)

// simStart runs runSim with args plus --addr 127.0.0.1:0 and returns its base URL, its stderr and a
// stop function that cancels it and returns runSim's error.
func simStart(t *testing.T, args ...string) (base string, stderr *lockedBuffer, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- runSim(ctx, append([]string{"--addr", "127.0.0.1:0"}, args...), stdout, stderr) }()
	var stopped bool
	var result error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case result = <-done:
			case <-time.After(10 * time.Second):
				t.Error("jobmanager-sim did not stop")
			}
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			done <- err
			return true
		default:
		}
		return simListening.MatchString(stdout.String())
	}, 5*time.Second, time.Millisecond, "no listening line; stderr: %s", stderr)
	m := simListening.FindStringSubmatch(stdout.String())
	require.NotNil(t, m, "runSim ended early; stderr: %s", stderr)
	return m[1], stderr, stop
}

// simGuideRequest performs one of the guide's curl examples and returns code and body.
type simGuideRequest func(t *testing.T, method, url string, headers []string, body string) (int, string)

// simNetHTTP sends what curl would: the method, the -H headers, the -d body and curl's own
// Accept and User-Agent headers.
func simNetHTTP(t *testing.T, method, url string, headers []string, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	req.Header.Set("User-Agent", "curl/8")
	req.Header.Set("Accept", "*/*")
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ": ")
		require.True(t, ok, h)
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// simCurl runs the curl command line of the guide, adding only -sS and a status code trailer.
func simCurl(t *testing.T, method, url string, headers []string, body string) (int, string) {
	t.Helper()
	args := []string{"-sS", "-X", method, url}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	if body != "" {
		args = append(args, "-d", body)
	}
	args = append(args, "-w", "\n%{http_code}")
	out, err := exec.Command("curl", args...).Output()
	require.NoError(t, err, "curl %q", args)
	text := strings.TrimRight(string(out), "\n")
	i := strings.LastIndex(text, "\n")
	require.GreaterOrEqual(t, i, 0, text)
	var code int
	require.NoError(t, json.Unmarshal([]byte(text[i+1:]), &code), text)
	return code, text[:i]
}

// TestGuideCurlExamples runs the vendor guide's examples against jobmanager-sim: submit (202 with a
// string BatchId and AwaitingLessonCreation), poll to LessonsCreated (through the 404 lag), and the
// same JobID again, which ends LessonsImportFailed with "Duplicate JobId".
func TestGuideCurlExamples(t *testing.T) {
	base, stderr, stop := simStart(t, "--token", simToken, "--creation-delay", "20ms",
		"--processing-delay", "30ms", "--not-found-lag", "10ms", "--log-level", "debug")

	tests := []struct {
		name     string
		mandator string
		do       simGuideRequest
	}{
		{"net/http", "zh-kanti", simNetHTTP},
		{"curl", "zh-kanti-curl", simCurl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "curl" {
				if _, err := exec.LookPath("curl"); err != nil {
					t.Skip("curl not installed; the net/http case sends the same request")
				}
			}
			create := func() string {
				code, body := tt.do(t, "POST", base+"/"+tt.mandator+"/api/v2.0/jobs/create",
					[]string{"Authorization: Bearer " + simToken, "Content-Type: application/json"}, simGuideCreateBody)
				require.Equal(t, http.StatusAccepted, code, body)
				var accepted map[string]any
				require.NoError(t, json.Unmarshal([]byte(body), &accepted), body)
				id, isString := accepted["BatchId"].(string)
				require.True(t, isString, "BatchId is a string: %s", body)
				require.NotEmpty(t, id)
				assert.Equal(t, "AwaitingLessonCreation", accepted["ImportStatus"])
				return id
			}
			// poll runs in the test goroutine (the request helpers use require), as a client would.
			poll := func(id string) map[string]any {
				deadline := time.Now().Add(5 * time.Second)
				for {
					code, body := tt.do(t, "GET", base+"/"+tt.mandator+"/api/v2.0/jobs/batches/"+id,
						[]string{"Authorization: Bearer " + simToken}, "")
					// 404: not known yet; wait and retry, as the guide says.
					if code != http.StatusNotFound {
						require.Equal(t, http.StatusOK, code, body)
						var status map[string]any
						require.NoError(t, json.Unmarshal([]byte(body), &status), body)
						assert.Equal(t, id, status["BatchId"])
						if s := status["ImportStatus"]; s == "LessonsCreated" || s == "LessonsImportFailed" {
							return status
						}
					}
					require.True(t, time.Now().Before(deadline), "batch %s not terminal in time; last: %d %s", id, code, body)
					time.Sleep(5 * time.Millisecond) // the poll interval
				}
			}

			first := create()
			done := poll(first)
			assert.Equal(t, "LessonsCreated", done["ImportStatus"])
			assert.Nil(t, done["ErrorMessages"])

			second := create()
			assert.NotEqual(t, first, second, "a new request is a new batch")
			failed := poll(second)
			assert.Equal(t, "LessonsImportFailed", failed["ImportStatus"])
			assert.Equal(t, "Fehler: Duplicate JobId: job-20251223-001", failed["ErrorMessages"])
		})
	}

	resp, err := http.Get(base + "/_sim/state")
	require.NoError(t, err)
	defer resp.Body.Close()
	var state struct {
		Mandators map[string]struct {
			Lessons map[string]json.RawMessage
			JobIDs  []string `json:"jobIds"`
		}
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&state))
	m := state.Mandators["zh-kanti"]
	assert.Contains(t, m.Lessons, "L-0001")
	assert.Equal(t, []string{"job-20251223-001", "job-20251223-001"}, m.JobIDs)

	require.NoError(t, stop(), "a cancelled context is a clean shutdown")
	logs := stderr.String()
	assert.Contains(t, logs, `"msg":"jobmanager-sim listening"`)
	assert.Contains(t, logs, `"path":"/zh-kanti/api/v2.0/jobs/create"`, "one debug line per request")
	assert.NotContains(t, logs, simToken, "the token is never logged")
}

func TestSimFlagsAndEnv(t *testing.T) {
	t.Setenv("LESSONBRIDGE_SIM_FAIL_SUBMIT_RATE", "1")
	base, _, stop := simStart(t, "--creation-delay", "0s", "--log-level", "warn")
	resp, err := http.Post(base+"/m/api/v2.0/jobs/create", "application/json", strings.NewReader(simGuideCreateBody))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "--fail-submit-rate from the environment")
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.NoError(t, stop())
}

// TestSimEnvDoesNotCollide: the simulator reads LESSONBRIDGE_SIM_<FLAG>; a variable in run's style for
// one of its own flags is refused with both names, so that the bridge's environment cannot configure it.
func TestSimEnvDoesNotCollide(t *testing.T) {
	t.Setenv("LESSONBRIDGE_FAIL_SUBMIT_RATE", "1")
	err := runSim(t.Context(), []string{"--addr", "127.0.0.1:0"}, io.Discard, io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "LESSONBRIDGE_FAIL_SUBMIT_RATE")
	assert.Contains(t, err.Error(), "LESSONBRIDGE_SIM_FAIL_SUBMIT_RATE")
}

func TestSimBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"lose mode", []string{"--lose-mode", "drop"}, "--lose-mode"},
		{"rate", []string{"--fail-import-rate", "2"}, "ImportFailRate"},
		{"negative delay", []string{"--processing-delay", "-1s"}, "ProcessingDelay"},
		{"log level", []string{"--log-level", "loud"}, "--log-level"},
		{"address", []string{"--addr", "256.0.0.1:99999"}, "listen"},
		{"argument", []string{"extra"}, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr lockedBuffer
			err := runSim(context.Background(), tt.args, &stdout, &stderr)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Empty(t, stdout.String(), "nothing listens")
		})
	}
}
