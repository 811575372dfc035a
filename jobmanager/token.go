package jobmanager

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// TokenSource supplies the bearer token for a mandator. The client calls Token before every
// request and Reload once when JobManager answers 401; if the token changed, the request is
// sent once more. Implementations must be safe for concurrent use and must never put the
// token into an error.
type TokenSource interface {
	Token(ctx context.Context, mandator string) (string, error)
	Reload(ctx context.Context, mandator string) error
}

// StaticToken returns a TokenSource that always returns token, whatever the mandator.
// Reload does nothing, so a 401 is not retried. An empty token or one with whitespace or
// control characters is an error at use.
func StaticToken(token string) TokenSource { return staticToken(token) }

type staticToken string

func (s staticToken) Token(context.Context, string) (string, error) {
	if err := checkToken(string(s)); err != nil {
		return "", fmt.Errorf("jobmanager: static token: %w", err)
	}
	return string(s), nil
}

func (staticToken) Reload(context.Context, string) error { return nil }

// TokenFile returns a TokenSource that reads the token from the file at path (surrounding
// whitespace trimmed) at first use and again on every Reload, whatever the mandator. A
// failed Reload keeps the token read before.
func TokenFile(path string) TokenSource {
	return &tokenFiles{resolve: func(string) []string { return []string{path} }}
}

// TokenDir returns a TokenSource for per-mandator tokens: the token of mandator m is read
// from the file <dir>/<m>, or from <dir>/default when that does not exist. Files are read
// at a mandator's first use and again on its Reload. An invalid mandator name is an error,
// so it can never name a path outside dir.
func TokenDir(dir string) TokenSource {
	return &tokenFiles{dir: true, resolve: func(m string) []string {
		return []string{filepath.Join(dir, m), filepath.Join(dir, "default")}
	}}
}

// tokenFiles caches tokens read from files, per mandator (one entry for TokenFile).
type tokenFiles struct {
	dir     bool                           // per-mandator: key the cache by mandator
	resolve func(mandator string) []string // candidate paths, the first existing one wins

	mu     sync.Mutex
	tokens map[string]string
}

func (t *tokenFiles) key(mandator string) (string, error) {
	if !t.dir {
		return "", nil
	}
	if err := validateMandator(mandator); err != nil {
		return "", err
	}
	return mandator, nil
}

func (t *tokenFiles) Token(_ context.Context, mandator string) (string, error) {
	key, err := t.key(mandator)
	if err != nil {
		return "", err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if tok, ok := t.tokens[key]; ok {
		return tok, nil
	}
	return t.loadLocked(mandator, key)
}

func (t *tokenFiles) Reload(_ context.Context, mandator string) error {
	key, err := t.key(mandator)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err = t.loadLocked(mandator, key)
	return err
}

func (t *tokenFiles) loadLocked(mandator, key string) (string, error) {
	paths := t.resolve(mandator)
	var lastErr error
	for _, p := range paths {
		tok, err := readTokenFile(p)
		if errors.Is(err, fs.ErrNotExist) && len(paths) > 1 {
			lastErr = err
			continue
		}
		if err != nil {
			return "", err
		}
		if t.tokens == nil {
			t.tokens = make(map[string]string)
		}
		t.tokens[key] = tok
		return tok, nil
	}
	return "", lastErr
}

func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("jobmanager: token file: %w", err) // *PathError: names the path, not the content
	}
	tok := strings.TrimSpace(string(b))
	if err := checkToken(tok); err != nil {
		return "", fmt.Errorf("jobmanager: token file %s: %w", path, err)
	}
	return tok, nil
}

// checkToken rejects tokens that cannot go into an Authorization header. Its errors never
// contain the token.
func checkToken(tok string) error {
	if tok == "" {
		return errors.New("empty token")
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c == 0x7f {
			return errors.New("token contains whitespace or control characters")
		}
	}
	return nil
}
