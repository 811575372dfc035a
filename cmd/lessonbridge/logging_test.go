package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

func TestNewLogger(t *testing.T) {
	tests := []struct {
		level, format string
		wantLines     int
		wantErr       string
	}{
		{"info", "json", 2, ""},
		{"warn", "json", 1, ""},
		{"debug", "console", 3, ""},
		{"error", "console", 0, ""},
		{"loud", "json", 0, `log level "loud"`},
		{"info", "xml", 0, `log format "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.level+"/"+tt.format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := newLogger(tt.level, tt.format, &buf)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			log.Debug("d")
			log.Info("i", zap.String("batchId", "12345"))
			log.Warn("w")
			require.NoError(t, log.Sync())
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if buf.Len() == 0 {
				lines = nil
			}
			assert.Len(t, lines, tt.wantLines)
			if tt.format == "json" {
				for _, l := range lines {
					var m map[string]any
					require.NoError(t, json.Unmarshal([]byte(l), &m), l)
					assert.Contains(t, m, "time")
					assert.Contains(t, m, "msg")
				}
			}
			if tt.level == "info" {
				assert.Contains(t, buf.String(), `"batchId":"12345"`)
			}
		})
	}
}
