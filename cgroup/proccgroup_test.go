package cgroup

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestParseProcCgroup(t *testing.T) {
	tests := []struct {
		name, content string
		want          map[string]string
	}{
		{
			name: "hybrid",
			content: "9:name=systemd:/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope\n" +
				"7:blkio:/kubepods/burstable/pod1/abc\n3:cpu,cpuacct:/kubepods/burstable/pod1/abc\n0::/\n",
			want: map[string]string{
				"name=systemd": "/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope",
				"blkio":        "/kubepods/burstable/pod1/abc",
				"cpu":          "/kubepods/burstable/pod1/abc",
				"cpuacct":      "/kubepods/burstable/pod1/abc",
				"":             "/",
			},
		},
		{
			name:    "v2",
			content: "0::/system.slice/docker-abc.scope\n",
			want:    map[string]string{"": "/system.slice/docker-abc.scope"},
		},
		{
			name:    "path with colon",
			content: "0::/a:b\n",
			want:    map[string]string{"": "/a:b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcCgroup(strings.NewReader(tt.content))
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseProcCgroupRejects(t *testing.T) {
	for _, content := range []string{"", "garbage\n", "1:blkio\n", ":blkio:/x\n", "1:blkio:relative\n"} {
		if got, err := ParseProcCgroup(strings.NewReader(content)); !errors.Is(err, ErrProcCgroup) {
			t.Errorf("ParseProcCgroup(%q) = %v, %v; want ErrProcCgroup", content, got, err)
		}
	}
}
