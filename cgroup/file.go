package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// CleanJoin joins rel under mount without touching the filesystem: it
// rejects NUL bytes and ".." components, so the result never leaves mount.
// An absolute rel is taken relative to mount, as runtimes write cgroup paths.
func CleanJoin(mount, rel string) (string, error) {
	if !filepath.IsAbs(mount) {
		return "", fmt.Errorf("%w: mount %q is not absolute", ErrPathEscape, mount)
	}
	if strings.ContainsRune(rel, 0) || strings.ContainsRune(mount, 0) {
		return "", fmt.Errorf("%w: %q contains NUL", ErrPathEscape, rel)
	}
	for _, component := range strings.Split(rel, "/") {
		if component == ".." {
			return "", fmt.Errorf("%w: %q contains \"..\"", ErrPathEscape, rel)
		}
	}
	mount = filepath.Clean(mount)
	joined := filepath.Join(mount, rel)
	if !within(mount, joined) {
		return "", fmt.Errorf("%w: %q under %s", ErrPathEscape, rel, mount)
	}
	return joined, nil
}

// within reports whether path is root or below it (both clean).
func within(root, path string) bool {
	return path == root || root == "/" || strings.HasPrefix(path, root+"/")
}

// SecureJoin is CleanJoin plus a check that no symlink along the existing
// part of the path leads out of mount. Only a path with a symlink below the mount
// is resolved: without one it cannot leave the mount, and the common case costs
// one lstat per component (the reconcile pass checks every container's cgroup).
func SecureJoin(mount, rel string) (string, error) {
	joined, err := CleanJoin(mount, rel)
	if err != nil {
		return "", err
	}
	existing := filepath.Clean(mount)
	symlinked := false
	for _, component := range strings.Split(strings.TrimPrefix(joined, existing), "/") {
		if component == "" {
			continue
		}
		next := filepath.Join(existing, component)
		info, err := os.Lstat(next)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				break // nothing below can be a symlink yet
			}
			return "", fmt.Errorf("cgroup: check %s: %w", next, err)
		}
		symlinked = symlinked || info.Mode()&fs.ModeSymlink != 0
		existing = next
	}
	if !symlinked {
		return joined, nil
	}
	realMount, err := filepath.EvalSymlinks(filepath.Clean(mount))
	if err != nil {
		return "", fmt.Errorf("cgroup: resolve mount %s: %w", mount, err)
	}
	realExisting, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return "", fmt.Errorf("cgroup: resolve %s: %w", existing, err)
	}
	if !within(realMount, realExisting) {
		return "", fmt.Errorf("%w: %s resolves to %s, outside %s", ErrPathEscape, existing, realExisting, realMount)
	}
	return joined, nil
}

// WriteFile writes value to the cgroup file dir/file in a single write(2),
// as the kernel parses each write on its own. file must be a plain name.
func WriteFile(dir, file, value string) error {
	path, err := cgroupFilePath(dir, file)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("cgroup: write %q to %s: %w", value, path, err)
	}
	if _, err := f.WriteString(value); err != nil {
		f.Close()
		return fmt.Errorf("cgroup: write %q to %s: %w", value, path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cgroup: write %q to %s: close: %w", value, path, err)
	}
	return nil
}

// ReadFile reads the cgroup file dir/file. It opens, reads and closes with
// plain system calls: os.ReadFile adds an fstat and a poller registration per
// file, a third of the CPU of reading every container's files on each scrape.
func ReadFile(dir, file string) (string, error) {
	path, err := cgroupFilePath(dir, file)
	if err != nil {
		return "", err
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("cgroup: read %s: %w", path, err)
	}
	defer unix.Close(fd)
	// Most cgroup files hold a line or none: read them into the stack, and allocate
	// only the string (a 4 KB buffer a file was most of what a reconcile pass
	// allocated).
	var small [512]byte
	content, err := readFD(fd, small[:0])
	if err != nil {
		return "", fmt.Errorf("cgroup: read %s: %w", path, err)
	}
	return string(content), nil
}

// readFD appends to buf what fd holds from its offset to the end, with plain read(2)
// calls, growing buf when it is full.
func readFD(fd int, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, max(cap(buf), 4096))
		}
		read, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if read == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+read]
	}
}

func cgroupFilePath(dir, file string) (string, error) {
	if file == "" || file == "." || file == ".." || strings.ContainsAny(file, "/\x00") {
		return "", fmt.Errorf("%w: %q in %s", ErrInvalidFile, file, dir)
	}
	return filepath.Join(dir, file), nil
}

// Apply performs every write in order through WriteFile. It goes on after
// a failed write, so one device the kernel refuses does not leave the others
// unthrottled, and returns every failure joined.
func Apply(dir string, writes []Write) error {
	var errs []error
	for _, w := range writes {
		if err := WriteFile(dir, w.File, w.Value); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// CheckDir verifies a cgroup directory built from a runtime's path (by
// translate.CgroupDir): it exists, is a directory and, symlinks resolved,
// stays inside mount.
func CheckDir(mount, dir string) error {
	rel, err := filepath.Rel(filepath.Clean(mount), filepath.Clean(dir))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("%w: %s is not under %s", ErrPathEscape, dir, mount)
	}
	joined, err := SecureJoin(mount, rel)
	if err != nil {
		return err
	}
	info, err := os.Stat(joined)
	if err != nil {
		return fmt.Errorf("cgroup: check cgroup dir: %w", err)
	}
	if !info.IsDir() {
		return fmt.Errorf("cgroup: check cgroup dir: %s is not a directory", joined)
	}
	return nil
}

// MakeDir creates the cgroupfs directory dir, whose parent must exist under mount:
// criguard makes a container's cgroup before the runtime joins it, never a tree.
func MakeDir(mount, dir string) error {
	if err := CheckDir(mount, filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("cgroup: make %s: %w", dir, err)
	}
	return nil
}
