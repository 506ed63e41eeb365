package main

import (
	"context"
	"errors"
	"io"
)

// runCheck is replaced by the policy work (issue 4).
func runCheck(_ context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("check: not implemented yet")
}
