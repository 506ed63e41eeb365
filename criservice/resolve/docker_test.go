package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeDockerd answers the three Docker API calls the resolver makes.
func fakeDockerd(t *testing.T, driver string, containers map[string]string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Content-Type", "application/json")
		switch path := r.URL.Path; {
		case strings.HasSuffix(path, "/_ping"):
			w.Write([]byte("OK"))
		case strings.HasSuffix(path, "/info"):
			json.NewEncoder(w).Encode(map[string]any{"CgroupDriver": driver})
		case strings.Contains(path, "/containers/") && strings.HasSuffix(path, "/json"):
			id := strings.TrimSuffix(path[strings.LastIndex(path, "/containers/")+len("/containers/"):], "/json")
			parent, ok := containers[id]
			if !ok {
				w.WriteHeader(http.StatusNotFound)
				json.NewEncoder(w).Encode(map[string]any{"message": "No such container: " + id})
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"Id": id, "HostConfig": map[string]any{"CgroupParent": parent}, "State": map[string]any{"Pid": 4242}})
		default:
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "unix://" + sock
}

func TestDockerResolver(t *testing.T) {
	ctx := context.Background()
	t.Run("cgroupfs", func(t *testing.T) {
		r := newDockerResolver(fakeDockerd(t, "cgroupfs", map[string]string{"abc": "/kubepods/besteffort/podU", "sand": "/kubepods/besteffort/podU", "plain": ""}), 0)
		if got, err := r.CgroupsPath(ctx, "abc"); err != nil || got != "/kubepods/besteffort/podU/abc" {
			t.Errorf("CgroupsPath = %q, %v", got, err)
		}
		if got, err := r.CgroupsPath(ctx, "plain"); err != nil || got != "/docker/plain" {
			t.Errorf("no CgroupParent: %q, %v; want /docker/plain", got, err)
		}
		if got, err := r.PodCgroupParent(ctx, "sand"); err != nil || got != "/kubepods/besteffort/podU" {
			t.Errorf("PodCgroupParent = %q, %v", got, err)
		}
		if pid, err := r.Pid(ctx, "abc"); err != nil || pid != 4242 {
			t.Errorf("Pid = %d, %v", pid, err)
		}
		if _, err := r.CgroupsPath(ctx, "gone"); !errors.Is(err, ErrUnknownContainer) {
			t.Errorf("unknown container: %v, want ErrUnknownContainer", err)
		}
	})
	t.Run("systemd", func(t *testing.T) {
		r := newDockerResolver(fakeDockerd(t, "systemd", map[string]string{"abc": "kubepods-besteffort-podU.slice"}), 0)
		if got, err := r.CgroupsPath(ctx, "abc"); err != nil || got != "kubepods-besteffort-podU.slice:docker:abc" {
			t.Errorf("CgroupsPath = %q, %v", got, err)
		}
	})
	t.Run("dockerd down, then up", func(t *testing.T) {
		dir := t.TempDir()
		r := newDockerResolver("unix://"+filepath.Join(dir, "none.sock"), 0)
		if _, err := r.CgroupsPath(ctx, "abc"); err == nil {
			t.Fatal("resolved with dockerd down")
		}
		r.endpoint = fakeDockerd(t, "cgroupfs", map[string]string{"abc": "/x"})
		if got, err := r.CgroupsPath(ctx, "abc"); err != nil || got != "/x/abc" {
			t.Errorf("after dockerd came up: %q, %v", got, err)
		}
	})
}
