package cgroup

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// mountTable keeps the last parse of one mountinfo file while the mount table
// stands still. The kernel marks an open /proc/PID/mountinfo POLLPRI when a mount
// or unmount happens (proc(5)), so a reconcile pass that finds no change reuses the
// parse instead of reading every container's overlay mount again. A file that is
// not on procfs (a test's) cannot say so and is read every time.
type mountTable struct {
	mu     sync.Mutex
	path   string
	fd     int // open on procfs and polled for a change; -1: read afresh
	mounts []mountEntry
}

var mountTables sync.Map // mountinfo path → *mountTable

func mountTableOf(path string) *mountTable {
	t, _ := mountTables.LoadOrStore(path, &mountTable{path: path, fd: -1})
	return t.(*mountTable)
}

// read returns the mounts, parsed again only when the table changed. Callers must
// not modify the result: it is shared.
func (t *mountTable) read() ([]mountEntry, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fd >= 0 && !mountsChanged(t.fd) {
		return t.mounts, nil
	}
	if t.fd < 0 {
		// A raw descriptor, not an *os.File: Go's poller would register the file
		// with its epoll, whose poll of it consumes the change mark.
		fd, err := unix.Open(t.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: t.path, Err: err}
		}
		if !onProcfs(fd) {
			defer unix.Close(fd)
			return parseMountsAt(fd)
		}
		t.fd = fd
	} else if _, err := unix.Seek(t.fd, 0, io.SeekStart); err != nil {
		t.forget()
		return nil, fmt.Errorf("rewind %s: %w", t.path, err)
	}
	mounts, err := parseMountsAt(t.fd)
	if err != nil {
		t.forget()
		return nil, err
	}
	t.mounts = mounts
	return mounts, nil
}

// forget closes the file: the next read opens it again and parses it.
func (t *mountTable) forget() {
	unix.Close(t.fd)
	t.fd, t.mounts = -1, nil
}

// mountsChanged polls fd without waiting: POLLPRI (with POLLERR) says the mount
// table changed since the last poll or since fd was opened. A failed poll counts
// as a change.
func mountsChanged(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}}
	n, err := unix.Poll(fds, 0)
	return err != nil || n > 0 && fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0
}

func onProcfs(fd int) bool {
	var st unix.Statfs_t
	return unix.Fstatfs(fd, &st) == nil && st.Type == unix.PROC_SUPER_MAGIC
}

// parseMountsAt parses the mountinfo open on fd, from its offset.
func parseMountsAt(fd int) ([]mountEntry, error) {
	content, err := readFD(fd, nil)
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return parseMounts(bytes.NewReader(content))
}
