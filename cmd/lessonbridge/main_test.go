package main

import (
	"bytes"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResolveVersion(t *testing.T) {
	tagged := &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}
	devel := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}
	tests := []struct {
		name   string
		ldflag string
		info   *debug.BuildInfo
		want   string
	}{
		{"ldflags win over the build info", "v2.0.0-rc1", tagged, "v2.0.0-rc1"},
		{"module version when no ldflags", "dev", tagged, "v1.4.0"},
		{"empty ldflag counts as unset", "", tagged, "v1.4.0"},
		{"devel build", "dev", devel, "dev"},
		{"no build info", "dev", nil, "dev"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, resolveVersion(tt.ldflag, tt.info))
		})
	}
}

func TestVersionLine(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261201095800-5d28c97e1a2b+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "5d28c97e1a2b3c4d5e6f"},
			{Key: "vcs.time", Value: "2026-12-01T09:58:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	assert.Equal(t, "lessonbridge v0.0.0-20261201095800-5d28c97e1a2b+dirty (revision 5d28c97e1a2b, 2026-12-01T09:58:00Z, modified; go1.26.8)",
		versionLine("dev", info))
	assert.Equal(t, "lessonbridge v1.2.3 (revision 5d28c97e1a2b, 2026-12-01T09:58:00Z, modified; go1.26.8)", versionLine("v1.2.3", info))
	assert.Equal(t, "lessonbridge dev (go1.26.8)", versionLine("dev", &debug.BuildInfo{GoVersion: "go1.26.8"}))
	assert.Equal(t, "lessonbridge dev", versionLine("dev", nil))
}

// Both spellings print the same line, with the Go version from the build info of this (test) binary.
func TestVersionCommandAndFlag(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		var out bytes.Buffer
		require.NoError(t, run(t.Context(), args, &out, io.Discard), args)
		line := strings.TrimSpace(out.String())
		assert.True(t, strings.HasPrefix(line, "lessonbridge "), line)
		assert.Contains(t, line, runtime.Version(), "%v: the Go version from the build info", args)
	}
	err := run(t.Context(), []string{"version", "extra"}, io.Discard, io.Discard)
	assert.ErrorContains(t, err, `version: unexpected argument "extra"`)
}
