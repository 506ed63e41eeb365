package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("criguard "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// envName is a flag's environment twin: --runtime-endpoint → CRIGUARD_RUNTIME_ENDPOINT.
func envName(flagName string) string {
	return "CRIGUARD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags applies environment twins first so that command-line flags win, and
// refuses a bad environment value rather than ignoring it.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if setErr := fs.Set(f.Name, v); setErr != nil {
				err = fmt.Errorf("environment %s=%q: %w", envName(f.Name), v, setErr)
			}
		}
	})
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &exitError{code: 0, err: errUsage}
		}
		return &exitError{code: 2, err: errUsage}
	}
	return nil
}
