package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSimErrorStyleFlags: --bad-resources and --bad-lessons fail the lessons they name, and
// --error-style words the failed batch's ErrorMessages.
func TestSimErrorStyleFlags(t *testing.T) {
	const jobs = `[{"JobID":"j-1","LektionList":[{"LektionId":"L-1","Beginn":"2025-12-23T08:00:00Z","Ende":"2025-12-23T10:00:00Z","RessourceName":"Raum 0"}]},
{"JobID":"j-2","LektionList":[{"LektionId":"L-2","Beginn":"2025-12-23T08:00:00Z","Ende":"2025-12-23T10:00:00Z","RessourceName":"Raum 1"}]},
{"JobID":"j-3","LektionList":[{"LektionId":"L-3","Beginn":"2025-12-23T08:00:00Z","Ende":"2025-12-23T10:00:00Z","RessourceName":"Raum 1"}]}]`
	tests := []struct {
		style string
		want  any
	}{
		{"lessons", []any{"Fehler: Ressource 'Raum 0' nicht gefunden (JobID j-1, LektionId L-1)",
			"Fehler: Lektion L-3 abgelehnt (JobID j-3, LektionId L-3)"}},
		{"jobid", []any{"Fehler: Validierung fehlgeschlagen (JobID j-1)", "Fehler: Validierung fehlgeschlagen (JobID j-3)"}},
		{"anonymous", "Fehler: Validierung fehlgeschlagen"},
		{"first-error", "Fehler: Ressource 'Raum 0' nicht gefunden (JobID j-1, LektionId L-1)"},
	}
	for _, tt := range tests {
		t.Run(tt.style, func(t *testing.T) {
			base, _, stop := simStart(t, "--error-style", tt.style, "--bad-resources", "Raum 0, Raum 9",
				"--bad-lessons", "L-3", "--creation-delay", "0s", "--processing-delay", "0s", "--not-found-lag", "0s",
				"--log-level", "warn")
			resp, err := http.Post(base+"/m/api/v2.0/jobs/create", "application/json", strings.NewReader(jobs))
			require.NoError(t, err)
			var accepted struct{ BatchId string }
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&accepted))
			resp.Body.Close()
			require.Equal(t, http.StatusAccepted, resp.StatusCode)

			resp, err = http.Get(base + "/m/api/v2.0/jobs/batches/" + accepted.BatchId)
			require.NoError(t, err)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			var status map[string]any
			require.NoError(t, json.Unmarshal(b, &status), "%s", b)
			assert.Equal(t, "LessonsImportFailed", status["ImportStatus"], "%s", b)
			assert.Equal(t, tt.want, status["ErrorMessages"])
			assert.NoError(t, stop())
		})
	}
}

func TestSimBadErrorStyle(t *testing.T) {
	var stdout, stderr lockedBuffer
	err := runSim(context.Background(), []string{"--error-style", "loud"}, &stdout, &stderr)
	assert.ErrorContains(t, err, `jobmanager-sim: --error-style: jobmanagertest: error style "loud": want one of [lessons jobid anonymous first-error]`)
	assert.Empty(t, stdout.String())
}
