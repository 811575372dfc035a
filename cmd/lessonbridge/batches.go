package main

import (
	"context"
	"errors"
	"io"
)

func runBatches(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("batches: not implemented yet")
}
