package main

import (
	"context"
	"errors"
	"io"
)

func runServe(_ context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("serve: not implemented yet")
}
