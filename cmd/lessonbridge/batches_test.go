package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lessonbridge/lessonbridge/consumer"
	"github.com/lessonbridge/lessonbridge/jobmanager"
	"github.com/lessonbridge/lessonbridge/jobmanager/jobmanagertest"
)

// bridgeAPIStub serves /batches and /readyz like a running bridge.
func bridgeAPIStub(t *testing.T, batches []consumer.BatchInfo, readyCode *atomic.Int32) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /batches", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, batches) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, int(readyCode.Load()), map[string]any{"ready": readyCode.Load() == 200})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestBatchesCommand(t *testing.T) {
	clearRunEnv(t)
	batches := []consumer.BatchInfo{
		{Key: "k1", Mandator: "zh-kanti", Action: "create", BatchID: "12345", State: "polling",
			Created: time.Now().Add(-95 * time.Second), Polls: 4, Lessons: 12, Events: 13, LastStatus: "AwaitingLessonProcessing"},
		{Key: "k2", Mandator: "zh-kanti", Action: "delete", State: "submitting", Created: time.Now(), Lessons: 1, Events: 1},
		{Key: "k3", Mandator: "zh-kanti", Action: "create", BatchID: "12346", State: "settling", Created: time.Now(), Lessons: 4, Events: 1,
			LastStatus: "LessonsImportFailed", FollowUps: []string{"k4"}},
		{Key: "k4", Mandator: "zh-kanti", Action: "create", State: "recorded", Created: time.Now(), Lessons: 3, Events: 3,
			Parent: "k3", Root: "k3"},
	}
	var ready atomic.Int32
	ready.Store(200)
	addr := bridgeAPIStub(t, batches, &ready)
	empty := bridgeAPIStub(t, nil, &ready)

	tests := []struct {
		name    string
		args    []string
		want    []string // the first lines of stdout, blanks collapsed, each as it starts
		wantErr string
	}{
		{"table", []string{"--http-addr", addr}, []string{
			"MANDATOR ACTION BATCH STATE AGE POLLS LESSONS EVENTS LAST STATUS ISOLATION",
			"zh-kanti create 12345 polling 1m35s 4 12 13 AwaitingLessonProcessing -",
			"zh-kanti delete - submitting 0s 0 1 1 - -",
			"zh-kanti create 12346 settling 0s 0 4 1 LessonsImportFailed split into k4",
			"zh-kanti create - recorded 0s 0 3 3 - follow-up of k3",
		}, ""},
		{"URL form", []string{"--http-addr", "http://" + addr + "/"}, []string{"MANDATOR", "zh-kanti create 12345"}, ""},
		{"empty", []string{"--http-addr", empty}, []string{"the bridge has no batches in flight"}, ""},
		{"ready check passes", []string{"--http-addr", addr, "--check-ready"}, []string{"MANDATOR", "zh-kanti create 12345"}, ""},
		{"no bridge", []string{"--http-addr", "127.0.0.1:1", "--timeout", "2s"}, nil, "batches:"},
		{"jobmanager without mandator", []string{"--http-addr", addr, "--jobmanager-url", "http://jm"}, nil,
			`--mandator (LESSONBRIDGE_BATCHES_MANDATOR) "": must match [A-Za-z0-9_-]{1,64} (needed with --jobmanager-url)`},
		{"jobmanager URL with the mandator in it", []string{"--http-addr", addr, "--jobmanager-url", "http://jm/zh-kanti", "--mandator", "zh-kanti"}, nil,
			`--jobmanager-url (LESSONBRIDGE_BATCHES_JOBMANAGER_URL) "http://jm/zh-kanti": ends in or contains the mandator "zh-kanti", which the bridge adds per event: give http://jm`},
		{"jobmanager URL without scheme", []string{"--http-addr", addr, "--jobmanager-url", "jm:8080", "--mandator", "zh-kanti"}, nil,
			`--jobmanager-url (LESSONBRIDGE_BATCHES_JOBMANAGER_URL) "jm:8080": needs a scheme: give http://jm:8080 or https://jm:8080`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runBatches(context.Background(), tt.args, &stdout, &stderr)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			lines := strings.Split(stdout.String(), "\n")
			for i, w := range tt.want {
				require.Greater(t, len(lines), i)
				assert.True(t, strings.HasPrefix(strings.Join(strings.Fields(lines[i]), " "), w), "line %d: %q", i, lines[i])
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		var stdout bytes.Buffer
		require.NoError(t, runBatches(context.Background(), []string{"--http-addr", addr, "--json"}, &stdout, &bytes.Buffer{}))
		var got []consumer.BatchInfo
		require.NoError(t, json.Unmarshal(stdout.Bytes(), &got))
		require.Len(t, got, 4)
		assert.Equal(t, "12345", got[0].BatchID)
		assert.Equal(t, []string{"k4"}, got[2].FollowUps)
		assert.Equal(t, "k3", got[3].Parent)
	})

	t.Run("not ready", func(t *testing.T) {
		ready.Store(503)
		t.Cleanup(func() { ready.Store(200) })
		var stdout bytes.Buffer
		err := runBatches(context.Background(), []string{"--http-addr", addr, "--check-ready"}, &stdout, &bytes.Buffer{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "bridge not ready (503)")
		assert.Empty(t, stdout.String())
	})
}

// The compose health check runs `batches --check-ready` inside the bridge's container, whose
// environment configures run (LESSONBRIDGE_JOBMANAGER_URL and friends). batches must not read those:
// before per-command variables it failed with "--jobmanager-url needs --mandator".
func TestBatchesIgnoresRunsEnvironment(t *testing.T) {
	clearRunEnv(t)
	var ready atomic.Int32
	ready.Store(200)
	addr := bridgeAPIStub(t, nil, &ready)
	for k, v := range map[string]string{"LESSONBRIDGE_NATS_URL": "nats://nats:4222", "LESSONBRIDGE_JOBMANAGER_URL": "http://jobmanager-sim:8080",
		"LESSONBRIDGE_JOBMANAGER_TOKEN": "dev-token", "LESSONBRIDGE_MANDATORS": "demo", "LESSONBRIDGE_LOG_FORMAT": "json",
		"LESSONBRIDGE_HTTP_ADDR": "0.0.0.0:9"} {
		t.Setenv(k, v)
	}
	var stdout bytes.Buffer
	require.NoError(t, runBatches(t.Context(), []string{"--http-addr", addr, "--check-ready", "--timeout", "3s"}, &stdout, &bytes.Buffer{}))
	assert.Contains(t, stdout.String(), "no batches in flight")

	// Its own variables are read, and their errors name them.
	t.Setenv("LESSONBRIDGE_BATCHES_HTTP_ADDR", addr)
	t.Setenv("LESSONBRIDGE_BATCHES_JOBMANAGER_URL", "http://jm/api/v2.0")
	t.Setenv("LESSONBRIDGE_BATCHES_MANDATOR", "demo")
	err := runBatches(t.Context(), nil, &bytes.Buffer{}, &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `--jobmanager-url (LESSONBRIDGE_BATCHES_JOBMANAGER_URL) "http://jm/api/v2.0": must stop before /{mandator}/api/v2.0`)
	t.Setenv("LESSONBRIDGE_BATCHES_TIMEOUT", "soon")
	err = runBatches(t.Context(), nil, &bytes.Buffer{}, &bytes.Buffer{})
	assert.ErrorContains(t, err, `environment LESSONBRIDGE_BATCHES_TIMEOUT="soon" (flag --timeout)`)
}

func TestBatchesCommandWithJobManager(t *testing.T) {
	clearRunEnv(t)
	var ready atomic.Int32
	ready.Store(200)
	addr := bridgeAPIStub(t, nil, &ready)
	sim := jobmanagertest.New(jobmanagertest.Config{Token: "jm-tok", CreationDelay: time.Hour})
	jmSrv := httptest.NewServer(sim)
	t.Cleanup(jmSrv.Close)
	jm, err := jobmanager.New(jmSrv.URL, jobmanager.WithToken("jm-tok"))
	require.NoError(t, err)
	st, err := jm.Submit(context.Background(), "demo", jobmanager.ActionCreate, []jobmanager.Job{{JobID: "job-1",
		LektionList: []jobmanager.Lesson{{LektionID: "L-1", Beginn: "2026-01-05T08:00:00Z", Ende: "2026-01-05T09:00:00Z", RessourceName: "Aula"}}}})
	require.NoError(t, err)

	var stdout bytes.Buffer
	require.NoError(t, runBatches(context.Background(), []string{"--http-addr", addr, "--jobmanager-url", jmSrv.URL,
		"--mandator", "demo", "--jobmanager-token", "jm-tok"}, &stdout, &bytes.Buffer{}))
	out := stdout.String()
	assert.Contains(t, out, "the bridge has no batches in flight")
	assert.Contains(t, out, "JobManager batches of demo:")
	assert.Contains(t, out, st.BatchID)
	assert.Contains(t, out, "AwaitingLessonCreation")

	stdout.Reset()
	require.NoError(t, runBatches(context.Background(), []string{"--http-addr", addr, "--jobmanager-url", jmSrv.URL,
		"--mandator", "demo", "--jobmanager-token", "jm-tok", "--json"}, &stdout, &bytes.Buffer{}))
	var got struct {
		Bridge     []consumer.BatchInfo     `json:"bridge"`
		Mandator   string                   `json:"mandator"`
		JobManager []jobmanager.BatchStatus `json:"jobmanager"`
	}
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &got), stdout.String())
	assert.Empty(t, got.Bridge)
	assert.Equal(t, "demo", got.Mandator)
	require.Len(t, got.JobManager, 1)
	assert.Equal(t, st.BatchID, got.JobManager[0].BatchID)

	err = runBatches(context.Background(), []string{"--http-addr", addr, "--jobmanager-url", jmSrv.URL,
		"--mandator", "demo", "--jobmanager-token", "wrong-tok"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "401")
	assert.NotContains(t, err.Error(), "wrong-tok")
}
