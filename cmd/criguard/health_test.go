package main

import (
	"errors"
	"testing"
)

// runtimeSays stands for the runtime probe (proxy tests cover how it judges the runtime).
type runtimeSays struct{ err error }

func (r runtimeSays) Ready() error { return r.err }

// /readyz names the runtime first, then a policy that did not load; READY=1
// waits only for the runtime.
func TestReadinessRuntimeFirstThenPolicy(t *testing.T) {
	slow := errors.New("runtime slow: no answer to Version within 2s on a connected channel")
	broken := errors.New("policy.hcl:3,1: unknown block")
	for _, tc := range []struct {
		name            string
		runtime, policy error
		readyz          string // "" is ready
		systemdReady    bool
		systemdStatus   string
	}{
		{"all well", nil, nil, "", true, "forwarding; the runtime answers"},
		{"runtime slow", slow, nil, slow.Error(), false, "waiting for the runtime to answer"},
		{"runtime slow and policy broken", slow, broken, slow.Error(), false, "waiting for the runtime to answer"},
		{"policy broken", nil, broken, "policy not loaded: " + broken.Error(), true, "forwarding; policy not loaded: " + broken.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var policy policyHealth
			policy.set(tc.policy)
			got := ""
			if err := ready(runtimeSays{tc.runtime}, &policy); err != nil {
				got = err.Error()
			}
			if got != tc.readyz {
				t.Errorf("/readyz detail %q, want %q", got, tc.readyz)
			}
			ok, status := readyForSystemd(runtimeSays{tc.runtime}, &policy)
			if ok != tc.systemdReady || status != tc.systemdStatus {
				t.Errorf("READY=1 %v with STATUS=%q, want %v with %q", ok, status, tc.systemdReady, tc.systemdStatus)
			}
		})
	}
}
