package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/criguard/criguard/criservice"
	"github.com/criguard/criguard/policy"
)

// lastGoodFile is the copy, in the state dir, of the last policy that loaded: what
// criguard runs when it starts on a broken file, instead of lifting every limit.
const lastGoodFile = "last-good-policy.hcl"

func keepLastGood(stateDir string, p *policy.Policy, log *slog.Logger) {
	if stateDir == "" || p == nil || len(p.Source) == 0 {
		return
	}
	path := filepath.Join(stateDir, lastGoodFile)
	if old, err := os.ReadFile(path); err == nil && string(old) == string(p.Source) {
		return
	}
	if err := criservice.WriteFileAtomic(path, p.Source); err != nil {
		log.Error("cannot keep the last good policy; a restart on a broken file would run hands off", "path", path, "err", err)
	}
}

func loadLastGood(stateDir string) (*policy.Policy, error) {
	if stateDir == "" {
		return nil, fmt.Errorf("no --state-dir")
	}
	return policy.Load(filepath.Join(stateDir, lastGoodFile))
}
