package policy

import (
	"strings"
	"testing"
)

// Image rules match the normalized reference (issue 21, finding 9): however a pod
// author spells a Docker Hub image, a rule on docker.io/library/* catches it, and
// nothing else gets in by looking like it.
func TestHostileImageSpellings(t *testing.T) {
	p := mustParse(t, `
class "hub" {
  io {
    device    = "8:0"
    write_bps = "1MiB"
  }
}
class "tagged" {
  io {
    device    = "8:0"
    write_bps = "2MiB"
  }
}
class "short" {
  io {
    device    = "8:0"
    write_bps = "3MiB"
  }
}
class "backup" {
  io {
    device    = "8:0"
    write_bps = "4MiB"
  }
}
rule "pinned" {
  match {
    images = ["docker.io/library/redis:7.*"]
  }
  class = "tagged"
}
rule "hub" {
  match {
    images = ["docker.io/library/*"]
  }
  class = "hub"
}
rule "short" {
  match {
    images = ["nginx*", "BadName"]
  }
  class = "short"
}
rule "backup" {
  match {
    images = ["registry.example.com/backup/*"]
  }
  class = "backup"
}
`)
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		image string
		rule  string // "" no rule
	}{
		{"busybox", "hub"},
		{"busybox:1.36", "hub"},
		{"library/busybox", "hub"},
		{"docker.io/busybox", "hub"},
		{"index.docker.io/library/busybox", "hub"},
		{"registry-1.docker.io/library/busybox:1.36", "hub"},
		{"DOCKER.IO/library/busybox", "hub"},
		{"Index.Docker.IO/library/busybox", "hub"},
		{"busybox@" + digest, "hub"},
		{"busybox:1.36@" + digest, "hub"},
		{"redis", "hub"}, // redis:latest is not redis:7.*
		{"redis:7.2", "pinned"},
		{"library/redis:7.2-alpine", "pinned"},
		{"nginx:1.27", "hub"}, // docker.io/library/nginx: the earlier rule wins
		{"registry.example.com/backup/restic:0.16", "backup"},
		{"REGISTRY.example.com/backup/restic", "backup"},

		// Look-alikes stay out.
		{"quay.io/library/busybox", ""},
		{"docker.io.evil.example/library/busybox", ""},
		{"localhost/library/busybox", ""},
		{"ghcr.io/docker.io/library/busybox", ""},
		{"registry.example.com/backup-not/x", ""},
		// An image ID is not a Docker Hub name called sha256.
		{digest, ""},
		{strings.TrimPrefix(digest, "sha256:"), ""},
		// A name that does not parse is matched as written.
		{"BadName", "short"},
		{"docker.io/library/Busybox", "hub"},
	}
	for _, tt := range tests {
		d := p.Decide(Workload{Namespace: "t", ContainerName: "app", Image: tt.image})
		if d.Rule != tt.rule {
			t.Errorf("image %q: rule %q (%s), want %q", tt.image, d.Rule, d.Reason, tt.rule)
		}
	}
}

func TestImageMatchSaysWhichForm(t *testing.T) {
	p := mustParse(t, `
class "c" {
  pids { max = 10 }
}
rule "hub" {
  match {
    images = ["docker.io/library/*"]
  }
  class = "c"
}
`)
	d := p.Decide(Workload{Namespace: "t", ContainerName: "app", Image: "busybox:1.36"})
	if want := `image "busybox:1.36" (docker.io/library/busybox:1.36) matches "docker.io/library/*"`; !strings.Contains(d.Reason, want) {
		t.Errorf("reason %q does not say %q", d.Reason, want)
	}
}
