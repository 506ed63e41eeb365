package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestDaemonLinksNoTemplates: text/template calls reflect's MethodByName, and one
// reachable caller makes the linker keep every exported method of every type in the
// binary. gRPC's x/net/trace brought it in (html/template) until the Makefile's
// GO_TAGS left it out: 5 MB of binary, nearly all of it resident in the daemon
// (docs/BENCHMARKS.md §18). This fails when the tag is dropped or a new dependency
// brings a template package back.
func TestDaemonLinksNoTemplates(t *testing.T) {
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^GO_TAGS\s*:=\s*(\S+)\s*$`).FindSubmatch(makefile)
	if m == nil {
		t.Fatal("the Makefile sets no GO_TAGS")
	}
	out, err := exec.Command("go", "list", "-deps", "-tags", string(m[1]), ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "text/template" || pkg == "html/template" || pkg == "golang.org/x/net/trace" {
			t.Errorf("criguard built with -tags %s links %s", m[1], pkg)
		}
	}
}
