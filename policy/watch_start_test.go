package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// The start-up rule (issue 21, finding 3): a policy file that exists but is empty,
// half-written or broken never puts an empty rule set in force, which would reset
// every limit criguard had written. The last good copy runs if it is itself good and
// not empty; otherwise the watcher keeps hands off (Current nil).
func TestWatcherStartRefusesEmptyOrBrokenFiles(t *testing.T) {
	const broken = "rule \"batch\" {\n"
	cases := []struct {
		name     string
		file     string
		lastGood *string // nil: no copy on disk
		want     string  // version in force; "" hands off
		wantErr  error
	}{
		{name: "0-byte file, no copy", file: "", want: "", wantErr: ErrPolicyEmpty},
		{name: "white-space file, no copy", file: "\n  \t\n", want: "", wantErr: ErrPolicyEmpty},
		{name: "0-byte file, good copy", file: "", lastGood: ptr(ruledPolicy("kept")), want: "kept", wantErr: ErrPolicyEmpty},
		{name: "half-written file, good copy", file: versionPolicy("new")[:25], lastGood: ptr(ruledPolicy("kept")), want: "kept", wantErr: ErrPolicyInvalid},
		{name: "broken file, empty copy", file: broken, lastGood: ptr(""), want: "", wantErr: ErrPolicyInvalid},
		{name: "broken file, broken copy", file: broken, lastGood: ptr(broken), want: "", wantErr: ErrPolicyInvalid},
		{name: "empty file, empty copy", file: "", lastGood: ptr("\n"), want: "", wantErr: ErrPolicyEmpty},
		// A copy that throttles nothing would only reset every limit: hands off instead.
		{name: "broken file, comment-only copy", file: broken, lastGood: ptr("# nothing\n"), want: "", wantErr: ErrPolicyInvalid},
		{name: "empty file, copy with classes and no rules", file: "", lastGood: ptr(versionPolicy("unused")), want: "", wantErr: ErrPolicyEmpty},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path, lastGood := filepath.Join(dir, "policy.hcl"), filepath.Join(dir, "state", "last-good-policy.hcl")
			mustWriteFile(t, path, tc.file)
			if tc.lastGood != nil {
				mustWriteFile(t, lastGood, *tc.lastGood)
			}
			w, err := NewWatcher(path, nil, WithLastGood(lastGood))
			var refused *StartError
			if !errors.As(err, &refused) || !errors.Is(err, tc.wantErr) {
				t.Fatalf("NewWatcher = %v, want a *StartError wrapping %v", err, tc.wantErr)
			}
			got := ""
			if p := w.Current(); p != nil {
				got = policyVersion(p)
				if got == "" {
					t.Fatalf("an empty rule set is in force (%s); want the last good copy or nothing", p.Filename)
				}
			}
			if got != tc.want {
				t.Errorf("in force %q, want %q (\"\" is hands off)", got, tc.want)
			}
			if (refused.LastGood != "") != (tc.want != "") {
				t.Errorf("StartError.LastGood = %q with %q in force", refused.LastGood, got)
			}
			if tc.lastGood != nil && tc.want == "" && refused.LastGoodErr == nil {
				t.Error("a refused last good copy is not explained")
			}
			// The refused file never overwrites the copy.
			if tc.lastGood != nil {
				if b, _ := os.ReadFile(lastGood); string(b) != *tc.lastGood {
					t.Errorf("the last good copy became %q", b)
				}
			}
		})
	}
}

// A file with only comments is a deliberate policy with no rules (how an operator
// asks criguard to lift its limits), unlike an empty one.
func TestWatcherStartTakesACommentOnlyFile(t *testing.T) {
	dir := t.TempDir()
	path, lastGood := filepath.Join(dir, "policy.hcl"), filepath.Join(dir, "last-good-policy.hcl")
	mustWriteFile(t, path, "# no throttles on this cluster for now\n")
	mustWriteFile(t, lastGood, versionPolicy("old"))
	w, err := NewWatcher(path, nil, WithLastGood(lastGood))
	if err != nil {
		t.Fatalf("NewWatcher(comment only) = %v", err)
	}
	if p := w.Current(); p == nil || len(p.Rules) != 0 || len(p.Classes) != 0 {
		t.Fatalf("Current = %+v, want a policy with no rules", p)
	}
}

// Every policy that loads, at start or on reload, becomes the last good copy; what
// is refused never does.
func TestWatcherKeepsTheLastGoodCopy(t *testing.T) {
	dir := t.TempDir()
	path, lastGood := filepath.Join(dir, "policy.hcl"), filepath.Join(dir, "state", "last-good-policy.hcl")
	mustWriteFile(t, path, versionPolicy("v1"))
	w, err := NewWatcher(path, nil, WithLastGood(lastGood))
	if err != nil {
		t.Fatal(err)
	}
	copyHolds := func(step, want string) {
		t.Helper()
		if b, err := os.ReadFile(lastGood); err != nil || string(b) != want {
			t.Errorf("%s: last good copy %q, %v; want %q", step, b, err, want)
		}
	}
	copyHolds("start", versionPolicy("v1"))
	mustWriteFile(t, path, versionPolicy("v2"))
	if r := w.reload(); r.Err != nil || !r.Changed {
		t.Fatalf("reload v2 = %+v", r)
	}
	copyHolds("reload", versionPolicy("v2"))
	for _, bad := range []string{"", "class {", "\n\n"} {
		mustWriteFile(t, path, bad)
		if r := w.reload(); r.Err == nil || policyVersion(r.Policy) != "v2" {
			t.Fatalf("reload %q = %+v, want refused with v2 kept", bad, r)
		}
		copyHolds("refused "+bad, versionPolicy("v2"))
	}
}

// A watcher that started hands off must not take an emptied file as a policy on
// reload either: that would reset every limit as surely as at start.
func TestWatcherReloadRefusesAnEmptyFileWithNothingInForce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.hcl")
	mustWriteFile(t, path, "class {")
	w, err := NewWatcher(path, nil)
	var diags hcl.Diagnostics
	if !errors.As(err, &diags) {
		t.Fatalf("NewWatcher(broken) = %v", err)
	}
	mustWriteFile(t, path, "")
	if r := w.reload(); !errors.Is(r.Err, ErrPolicyEmpty) || r.Policy != nil || w.Current() != nil {
		t.Errorf("reload of an empty file = %+v, Current %v; want ErrPolicyEmpty and hands off", r, w.Current())
	}
}

// ruledPolicy is versionPolicy with a rule giving its class to every workload.
func ruledPolicy(version string) string {
	return versionPolicy(version) + fmt.Sprintf("rule \"all\" {\n  class = %q\n}\n", version)
}

func mustWriteFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }
