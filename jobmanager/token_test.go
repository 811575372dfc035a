package jobmanager

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTokenDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name, tok string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(tok+"\n"), 0o600))
	}
	write("zh-kanti", "tok-zh")
	write("default", "tok-default")
	ts := TokenDir(dir)

	tok, err := ts.Token(ctx, "zh-kanti")
	require.NoError(t, err)
	assert.Equal(t, "tok-zh", tok)
	tok, err = ts.Token(ctx, "be-gym")
	require.NoError(t, err)
	assert.Equal(t, "tok-default", tok, "falls back to default")

	write("zh-kanti", "tok-zh-2")
	tok, _ = ts.Token(ctx, "zh-kanti")
	assert.Equal(t, "tok-zh", tok, "cached until Reload")
	require.NoError(t, ts.Reload(ctx, "zh-kanti"))
	tok, _ = ts.Token(ctx, "zh-kanti")
	assert.Equal(t, "tok-zh-2", tok)

	write("be-gym", "tok-be")
	require.NoError(t, ts.Reload(ctx, "be-gym"))
	tok, _ = ts.Token(ctx, "be-gym")
	assert.Equal(t, "tok-be", tok, "a mandator file that appears is used after Reload")

	_, err = ts.Token(ctx, "../etc")
	assert.ErrorContains(t, err, "invalid mandator")

	_, err = TokenDir(t.TempDir()).Token(ctx, "x")
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestTokenFileAndStatic(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tok")
	ts := TokenFile(path)
	_, err := ts.Token(ctx, "m")
	assert.ErrorIs(t, err, os.ErrNotExist, "read at first use")

	require.NoError(t, os.WriteFile(path, []byte("  abc \n"), 0o600))
	tok, err := ts.Token(ctx, "m")
	require.NoError(t, err)
	assert.Equal(t, "abc", tok)

	require.NoError(t, os.WriteFile(path, []byte(""), 0o600))
	assert.ErrorContains(t, ts.Reload(ctx, "m"), "empty token")
	tok, err = ts.Token(ctx, "other")
	require.NoError(t, err)
	assert.Equal(t, "abc", tok, "a failed Reload keeps the previous token")

	tok, err = StaticToken("xyz").Token(ctx, "m")
	require.NoError(t, err)
	assert.Equal(t, "xyz", tok)
	assert.NoError(t, StaticToken("xyz").Reload(ctx, "m"))
	_, err = StaticToken("").Token(ctx, "m")
	assert.Error(t, err)
}

func TestTokenFileConcurrentUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tok")
	require.NoError(t, os.WriteFile(path, []byte("abc"), 0o600))
	ts := TokenFile(path)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 10 {
		wg.Go(func() {
			if _, err := ts.Token(context.Background(), "m"); err != nil {
				errs <- err
			}
			if err := ts.Reload(context.Background(), "m"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
}

func TestWithTokenSourcePerMandator(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a"), []byte("tok-a"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "b"), []byte("tok-b"), 0o600))
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		want := map[string]string{"/a/api/v2.0/jobs/batches": "Bearer tok-a", "/b/api/v2.0/jobs/batches": "Bearer tok-b"}[r.URL.Path]
		if r.Header.Get("Authorization") != want {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`[]`))
	})
	c := newClient(t, srv.URL, WithTokenSource(TokenDir(dir)))
	for _, m := range []string{"a", "b"} {
		_, err := c.Batches(context.Background(), m)
		assert.NoError(t, err, m)
	}
}
