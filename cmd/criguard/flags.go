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

// daemonSettings is the package's environment file for criguard.service (its unit's
// EnvironmentFile). explain, status and top read it under the environment and the
// flags, so that on a node they look where the daemon does; CRIGUARD_SETTINGS names
// another file, and empty turns it off.
const daemonSettings = "/etc/default/criguard"

// parseStandaloneFlags is parseFlags with the daemon's settings file as the lowest layer:
// file, then environment, then command line.
func parseStandaloneFlags(fs *flag.FlagSet, args []string) error {
	path, ok := os.LookupEnv("CRIGUARD_SETTINGS")
	if !ok {
		path = daemonSettings
	}
	if path != "" {
		if err := applySettingsFile(fs, path); err != nil {
			return &exitError{code: 2, err: err}
		}
	}
	return parseFlags(fs, args)
}

// applySettingsFile sets the flags of fs that path names by their environment twins
// (systemd's EnvironmentFile syntax: KEY=VALUE, # or ; comments, optional quotes). A
// missing file is no error; keys of other commands' flags are ignored.
func applySettingsFile(fs *flag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	byEnv := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { byEnv[envName(f.Name)] = f.Name })
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		key, value, found := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !found {
			return fmt.Errorf("%s:%d: want KEY=VALUE, got %q", path, i+1, line)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if n := len(value); n >= 2 && (value[0] == '"' || value[0] == '\'') && value[n-1] == value[0] {
			value = value[1 : n-1]
		}
		name, known := byEnv[key]
		if !known {
			continue
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("%s:%d: %s=%q: %w", path, i+1, key, value, err)
		}
	}
	return nil
}
