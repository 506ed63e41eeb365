package main

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// shortSocketDir keeps unix socket paths under the 108-byte limit, which
// t.TempDir() paths can exceed.
func shortSocketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cga")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

const activationHelperEnv = "CRIGUARD_TEST_ACTIVATION_HELPER"

// TestActivationHelper is the child of TestListenTakesTheSocketFromLISTEN_FDS:
// it takes its listener as serve does, answers one connection with what it
// got, and exits, closing the listener.
func TestActivationHelper(t *testing.T) {
	endpoint := os.Getenv(activationHelperEnv)
	if endpoint == "" {
		t.Skip("the child of TestListenTakesTheSocketFromLISTEN_FDS")
	}
	// systemd sets LISTEN_PID in the forked child, before exec; a Go parent cannot.
	os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	ln, activated, err := listenCRI(endpoint, 0o600, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "activated=%v addr=%s env=%q\n", activated, ln.Addr(), os.Getenv("LISTEN_FDS"))
}

// The socket systemd holds is served as passed, and criguard's exit neither
// closes it for others nor unlinks it: the next criguard (or the backlog) takes
// the next connection.
func TestListenTakesTheSocketFromLISTEN_FDS(t *testing.T) {
	sock := filepath.Join(shortSocketDir(t), "criguard.sock")
	held, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldFile, err := held.File()
	if err != nil {
		t.Fatal(err)
	}
	defer heldFile.Close()

	// --listen names another path: a single passed socket wins over it.
	child := exec.Command(os.Args[0], "-test.run=^TestActivationHelper$", "-test.count=1")
	child.Env = append(os.Environ(), activationHelperEnv+"=unix:///nonexistent/criguard.sock",
		"LISTEN_FDS=1", "LISTEN_FDNAMES=criguard.socket")
	child.ExtraFiles = []*os.File{heldFile} // fd 3, SD_LISTEN_FDS_START
	var out strings.Builder
	child.Stdout, child.Stderr = &out, &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if err != nil {
		child.Wait()
		t.Fatalf("no answer from the child (%v); its output:\n%s", err, out.String())
	}
	if err := child.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	want := fmt.Sprintf("activated=true addr=%s env=\"\"\n", sock)
	if line != want {
		t.Fatalf("child answered %q, want %q (LISTEN_FDS unset once taken)", line, want)
	}

	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the socket file is gone after the child closed its listener: %v", err)
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := held.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	again, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		t.Fatalf("the held socket refuses connections after the child exited: %v", err)
	}
	again.Close()
	if err := <-accepted; err != nil {
		t.Fatalf("the held socket: %v", err)
	}
}

// LISTEN_FDS meant for another process (LISTEN_PID differs), or none at all:
// criguard binds --listen itself, as it always did.
func TestListenBindsWithoutActivation(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"no systemd":        {},
		"another process's": {"LISTEN_PID": "1", "LISTEN_FDS": "1"},
	} {
		t.Run(name, func(t *testing.T) {
			for k, v := range env {
				t.Setenv(k, v)
			}
			sock := filepath.Join(shortSocketDir(t), "criguard.sock")
			ln, activated, err := listenCRI("unix://"+sock, 0o640, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if activated {
				t.Error("activated without a socket passed to this process")
			}
			fi, err := os.Stat(sock)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o640 {
				t.Errorf("socket mode %v, want 0640", fi.Mode().Perm())
			}
		})
	}
}

func TestPickActivated(t *testing.T) {
	dir := shortSocketDir(t)
	listen := func(name string) net.Listener {
		ln, err := net.Listen("unix", filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	log := slog.New(slog.DiscardHandler)
	isClosed := func(ln net.Listener) bool {
		_, err := ln.Accept()
		return errors.Is(err, net.ErrClosed)
	}

	other, mine := listen("other.sock"), listen("criguard.sock")
	got, err := pickActivated([]net.Listener{nil, other, mine}, "unix://"+filepath.Join(dir, "criguard.sock"), log)
	if err != nil || got != mine {
		t.Fatalf("among several sockets: got %v, %v; want the one at --listen", got, err)
	}
	if !isClosed(other) {
		t.Error("the socket not taken was left open")
	}

	a, b := listen("a.sock"), listen("b.sock")
	_, err = pickActivated([]net.Listener{a, b}, "unix://"+filepath.Join(dir, "c.sock"), log)
	if !errors.Is(err, errNoActivatedSocket) {
		t.Fatalf("several sockets, none at --listen: err %v, want errNoActivatedSocket", err)
	}

	_, err = pickActivated([]net.Listener{nil}, "unix://"+filepath.Join(dir, "c.sock"), log)
	if !errors.Is(err, errNoActivatedSocket) {
		t.Fatalf("no listening socket passed: err %v, want errNoActivatedSocket", err)
	}
}
