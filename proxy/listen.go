package proxy

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// SocketPath returns the filesystem path of a unix endpoint: "unix:///run/x.sock"
// or "/run/x.sock".
func SocketPath(endpoint string) (string, error) {
	path := endpoint
	if rest, ok := strings.CutPrefix(endpoint, "unix://"); ok {
		path = rest
	}
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%w: %q", ErrBadEndpoint, endpoint)
	}
	return filepath.Clean(path), nil
}

// dialTarget is the gRPC target for an endpoint.
func dialTarget(endpoint string) (string, error) {
	path, err := SocketPath(endpoint)
	if err != nil {
		return "", err
	}
	return "unix://" + path, nil
}

// Listen creates the unix socket kubelet connects to: its parent directory is
// created, a stale socket left by a crash is replaced, and a socket another
// process still serves on is refused rather than stolen.
func Listen(endpoint string, mode fs.FileMode) (net.Listener, error) {
	path, err := SocketPath(endpoint)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("proxy: create socket directory: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("proxy: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("proxy: chmod %s to %o: %w", path, mode, err)
	}
	return ln, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("proxy: stat %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("proxy: %s exists and is not a socket; refusing to remove it", path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("%w: %s", ErrSocketInUse, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("proxy: probe %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("proxy: remove stale socket %s: %w", path, err)
	}
	return nil
}
