package main

import (
	"context"
	"errors"
	"io"
)

func runBridge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("bridge: not implemented yet")
}
