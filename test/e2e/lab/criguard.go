package lab

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CriguardProcess is a running `criguard serve` in front of a runtime, or `criguard
// nri` beside it (CriguardNRI).
type CriguardProcess struct {
	// Endpoint is the CRI endpoint clients use: criguard's, unix://<Socket>; as an
	// NRI plugin the runtime's own (Socket is then empty).
	Endpoint string
	Socket   string
	// LogPath collects criguard's output across restarts.
	LogPath string
	// PolicyPath is the --policy criguard reads unless args name another; the lab
	// does not create it (criguard forwards only while it is missing).
	PolicyPath string
	// StateDir is criguard's --state-dir unless args name another.
	StateDir string

	argv []string
	proc *process
	// nri: Start waits for the plugin's first synchronization, not for a socket.
	nri bool
	// Set by CriguardActivated: the socket the lab holds, and criguard's NOTIFY_SOCKET.
	held       *net.UnixListener
	heldFile   *os.File
	notifyPath string
	notified   chan string
}

// Criguard starts $CRIGUARD_BIN serve listening on a fresh socket and forwarding to
// runtimeEndpoint, with extra serve flags args (e.g. "--policy", path). Unless args say
// otherwise it logs at debug level, serves no metrics (instances side by side would
// share 127.0.0.1:9464), reads its policy from PolicyPath, never /etc/criguard, and
// keeps its state in a directory of its own, never /var/lib/criguard. It
// waits for the socket and registers a cleanup that stops criguard. The log is printed
// when the test fails.
func Criguard(t testing.TB, runtimeEndpoint string, args ...string) *CriguardProcess {
	t.Helper()
	return startCriguard(t, runtimeEndpoint, false, args)
}

// CriguardActivated is Criguard behind a socket the lab holds for the whole test, as
// systemd holds criguard.socket: while criguard restarts, connections wait in the
// socket's backlog. Each Start runs criguard through Debian's systemd-socket-activate,
// which passes the socket on (LISTEN_FDS, LISTEN_PID) as systemd does; it cannot hold
// the socket itself across restarts, since it execs criguard in its own place. The lab
// is criguard's NOTIFY_SOCKET: Start returns once criguard sends READY=1, as
// `systemctl restart` of a Type=notify unit does.
func CriguardActivated(t testing.TB, runtimeEndpoint string, args ...string) *CriguardProcess {
	t.Helper()
	return startCriguard(t, runtimeEndpoint, true, args)
}

func startCriguard(t testing.TB, runtimeEndpoint string, activated bool, args []string) *CriguardProcess {
	t.Helper()
	c := newCriguard(t)
	c.Endpoint = "unix://" + c.Socket
	// Later flags win: args override these defaults.
	c.argv = append([]string{c.argv[0], "serve", "--listen", c.Endpoint, "--runtime-endpoint", runtimeEndpoint,
		"--log-level", "debug", "--metrics-addr", "", "--policy", c.PolicyPath,
		"--state-dir", c.StateDir}, args...)
	if activated {
		c.holdSocket(t, filepath.Dir(c.Socket))
	}
	c.Start(t)
	c.stopOnCleanup(t)
	return c
}

// CriguardNRI starts $CRIGUARD_BIN nri as a plugin on the runtime's NRI socket, with
// runtimeEndpoint (the runtime's own CRI socket) for its lookups, and the defaults
// and cleanup of Criguard. Start waits until the runtime has handed the plugin its
// listing. Clients talk to the runtime directly: Endpoint is runtimeEndpoint.
func CriguardNRI(t testing.TB, runtimeEndpoint, nriSocket string, args ...string) *CriguardProcess {
	t.Helper()
	c := newCriguard(t)
	c.Endpoint, c.Socket, c.nri = runtimeEndpoint, "", true
	c.argv = append([]string{c.argv[0], "nri", "--nri-socket", nriSocket, "--nri-retry", "200ms",
		"--runtime-endpoint", runtimeEndpoint, "--log-level", "debug", "--metrics-addr", "",
		"--policy", c.PolicyPath, "--state-dir", c.StateDir}, args...)
	c.Start(t)
	c.stopOnCleanup(t)
	return c
}

// newCriguard is a criguard not started yet, in directories of its own; argv holds
// only the binary.
func newCriguard(t testing.TB) *CriguardProcess {
	t.Helper()
	binary := os.Getenv("CRIGUARD_BIN")
	if binary == "" {
		t.Fatalf("lab: CRIGUARD_BIN is not set: run the suite with `make e2e`")
	}
	if _, err := os.Stat(binary); err != nil {
		t.Fatalf("lab: CRIGUARD_BIN: %v", err)
	}
	runDir, dataDir := instanceDirs(t, "cg")
	return &CriguardProcess{
		Socket:     filepath.Join(runDir, "criguard.sock"),
		LogPath:    filepath.Join(dataDir, "criguard.log"),
		PolicyPath: filepath.Join(dataDir, "policy.hcl"),
		StateDir:   filepath.Join(dataDir, "state"),
		argv:       []string{binary},
	}
}

// stopOnCleanup stops criguard when the test ends, and prints its log if it failed.
func (c *CriguardProcess) stopOnCleanup(t testing.TB) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lab: criguard log tail (%s):\n%s", c.LogPath, fileTail(c.LogPath, 80))
		}
		if c.proc != nil {
			if c.nri {
				_ = c.proc.cmd.Process.Signal(syscall.SIGCONT) // a paused plugin cannot stop
			}
			if err, killed := c.proc.stop(15 * time.Second); killed {
				t.Errorf("lab: criguard did not exit within 15s of SIGTERM: killed (%v)", err)
			}
		}
	})
}

// Start starts criguard again with the same flags after Stop or Kill, and waits for
// its socket (behind a held socket: for its READY=1; as an NRI plugin: for the
// runtime's listing). Starting a running criguard fails the test.
func (c *CriguardProcess) Start(t testing.TB) {
	t.Helper()
	if c.proc != nil && !c.proc.exited() {
		t.Fatalf("lab: criguard is already running (pid %d)", c.proc.cmd.Process.Pid)
	}
	if c.held != nil {
		c.startActivated(t)
		return
	}
	mark := fileSize(c.LogPath)
	proc, err := startProcess("criguard", c.LogPath, c.argv, nil)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	c.proc = proc
	if c.nri {
		if err := c.WaitLog(mark, "NRI: synchronized", startTimeout); err != nil {
			t.Fatalf("lab: criguard nri: %v; log:\n%s", err, proc.logTail(40))
		}
		// The runtime puts the plugin in its list once the listing is answered.
		time.Sleep(300 * time.Millisecond)
		return
	}
	if err := waitForSocket(c.Socket, proc, startTimeout); err != nil {
		t.Fatalf("lab: criguard: %v", err)
	}
}

// Arg is the value criguard was started with for flag name ("--policy"), the
// last one given; empty if none.
func (c *CriguardProcess) Arg(name string) string {
	value := ""
	for i := 0; i+1 < len(c.argv); i++ {
		if c.argv[i] == name {
			value = c.argv[i+1]
		}
	}
	return value
}

// LogSize is where criguard's log ends now: WaitLog's mark.
func (c *CriguardProcess) LogSize() int64 { return fileSize(c.LogPath) }

// WaitLog waits until the log written after mark holds want.
func (c *CriguardProcess) WaitLog(mark int64, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		data, _ := os.ReadFile(c.LogPath)
		if int64(len(data)) > mark && strings.Contains(string(data[mark:]), want) {
			return nil
		}
		if c.proc != nil && c.proc.exited() {
			return fmt.Errorf("criguard exited (%v) before logging %q", c.proc.waitErr, want)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %q in criguard's log within %s", want, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Pause stops criguard with SIGSTOP, as a process that hangs; Resume continues it.
func (c *CriguardProcess) Pause(t testing.TB) {
	t.Helper()
	if err := c.proc.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("lab: SIGSTOP criguard: %v", err)
	}
}

// Resume continues a criguard stopped by Pause.
func (c *CriguardProcess) Resume(t testing.TB) {
	t.Helper()
	if err := c.proc.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("lab: SIGCONT criguard: %v", err)
	}
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// holdSocket listens on c.Socket for the whole test and receives criguard's
// notifications, as systemd would.
func (c *CriguardProcess) holdSocket(t testing.TB, runDir string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: c.Socket, Net: "unix"})
	if err != nil {
		t.Fatalf("lab: hold criguard's socket: %v", err)
	}
	if err := os.Chmod(c.Socket, 0o660); err != nil { // criguard.socket's SocketMode
		t.Fatalf("lab: %v", err)
	}
	f, err := ln.File()
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	c.notifyPath = filepath.Join(runDir, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: c.notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatalf("lab: notify socket: %v", err)
	}
	c.held, c.heldFile, c.notified = ln, f, make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := notify.Read(buf)
			if err != nil {
				return
			}
			select {
			case c.notified <- string(buf[:n]):
			default: // nobody waits for READY=1 now: WATCHDOG=1 and the like
			}
		}
	}()
	// Registered before Criguard's own cleanup, so it runs after criguard has stopped.
	t.Cleanup(func() {
		notify.Close()
		f.Close()
		ln.Close()
	})
}

func (c *CriguardProcess) startActivated(t testing.TB) {
	t.Helper()
	activate := LookPath(t, "systemd-socket-activate")
	for len(c.notified) > 0 {
		<-c.notified
	}
	// systemd sets LISTEN_PID in the forked child; here sh does, then execs.
	// systemd-socket-activate passes on only PATH, HOME, USER, TERM and what -E names.
	argv := append([]string{"sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`, activate, "-E", "NOTIFY_SOCKET", "--"}, c.argv...)
	proc, err := startProcess("criguard", c.LogPath, argv, []string{"NOTIFY_SOCKET=" + c.notifyPath}, c.heldFile)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	c.proc = proc
	// systemd-socket-activate execs criguard at the first connection attempt.
	if conn, err := net.Dial("unix", c.Socket); err == nil {
		conn.Close()
	}
	timeout := time.After(startTimeout)
	for {
		select {
		case msg := <-c.notified:
			if strings.Contains(msg, "READY=1") {
				return
			}
		case <-proc.done:
			t.Fatalf("lab: criguard exited before READY=1 (%v); log:\n%s", proc.waitErr, proc.logTail(40))
		case <-timeout:
			t.Fatalf("lab: no READY=1 from criguard within %s; log:\n%s", startTimeout, proc.logTail(40))
		}
	}
}

// Activated reports whether criguard runs behind a socket the lab holds.
func (c *CriguardProcess) Activated() bool { return c.held != nil }

// Stop sends SIGTERM and waits up to grace for criguard to exit. It returns the exit
// error (nil for status 0); a criguard that needed SIGKILL fails the test.
func (c *CriguardProcess) Stop(t testing.TB, grace time.Duration) error {
	t.Helper()
	err, killed := c.proc.stop(grace)
	if killed {
		t.Errorf("lab: criguard did not exit within %s of SIGTERM: killed", grace)
	}
	return err
}

// Kill ends criguard with SIGKILL, as a crash would.
func (c *CriguardProcess) Kill(t testing.TB) {
	t.Helper()
	c.proc.kill()
}

// Restart stops criguard (SIGTERM) and starts it again.
func (c *CriguardProcess) Restart(t testing.TB) {
	t.Helper()
	if err := c.Stop(t, 15*time.Second); err != nil {
		t.Errorf("lab: criguard exit on restart: %v", err)
	}
	c.Start(t)
}

// Running reports whether the criguard process is alive.
func (c *CriguardProcess) Running() bool { return c.proc != nil && !c.proc.exited() }

// Pid is the process id of the running criguard.
func (c *CriguardProcess) Pid() int { return c.proc.cmd.Process.Pid }

// Log returns the last n lines of criguard's output.
func (c *CriguardProcess) Log(n int) string { return fileTail(c.LogPath, n) }
