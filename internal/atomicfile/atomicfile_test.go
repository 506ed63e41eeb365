package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// writers are the two ways to replace a file: each must replace it whole, 0600, and
// leave no temporary file behind whether it succeeds or fails.
var writers = map[string]func(string, []byte) error{"Write": Write, "WriteHint": WriteHint}

func TestWriteReplacesAndLeavesNoTemporaryFile(t *testing.T) {
	for name, write := range writers {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state") // created by the write
			path := filepath.Join(dir, "record.json")
			for _, content := range []string{"first", "second, longer than the first"} {
				if err := write(path, []byte(content)); err != nil {
					t.Fatalf("%s(%q): %v", name, content, err)
				}
				got, err := os.ReadFile(path)
				if err != nil || string(got) != content {
					t.Fatalf("after %s(%q) the file holds %q, %v", name, content, got, err)
				}
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want only the file: %v", len(entries), entries)
			}
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if perm := info.Mode().Perm(); perm != 0o600 {
				t.Errorf("mode %v, want 0600 (state files are criguard's own)", perm)
			}
		})
	}
}

func TestWriteFailureLeavesNoTemporaryFile(t *testing.T) {
	for name, write := range writers {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "record.json")
			if err := write(path, []byte("old")); err != nil {
				t.Fatal(err)
			}
			// A directory in the way of the rename: the write must fail, touch nothing
			// else and leave no temporary file behind.
			blocked := filepath.Join(dir, "blocked")
			if err := os.MkdirAll(filepath.Join(blocked, "child"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := write(blocked, []byte("new")); err == nil {
				t.Fatalf("%s over a non-empty directory succeeded", name)
			}
			if got, _ := os.ReadFile(path); string(got) != "old" {
				t.Errorf("file holds %q, want old", got)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 2 {
				t.Errorf("a temporary file was left behind: %v", entries)
			}
			// A directory it cannot make is an error, not a silent loss.
			if err := write(filepath.Join(path, "record.json"), []byte("x")); err == nil {
				t.Errorf("%s under a regular file succeeded", name)
			}
		})
	}
}

// A Saver writes a new content and skips the one the file already holds; after a
// failed write it writes again.
func TestSaverSkipsUnchangedContent(t *testing.T) {
	dir := t.TempDir()
	s := &Saver{Path: filepath.Join(dir, "state.json")}
	inode := func() uint64 {
		t.Helper()
		info, err := os.Stat(s.Path)
		if err != nil {
			t.Fatal(err)
		}
		return info.Sys().(*syscall.Stat_t).Ino // Write renames a new file in
	}
	if err := s.Save([]byte("a")); err != nil {
		t.Fatal(err)
	}
	first := inode()
	if err := s.Save([]byte("a")); err != nil || inode() != first {
		t.Fatalf("saving the same content again: err %v, rewritten %v; want neither", err, inode() != first)
	}
	if err := s.Save([]byte("b")); err != nil || inode() == first {
		t.Fatalf("saving new content: err %v, rewritten %v; want a new file", err, inode() != first)
	}
	if got, _ := os.ReadFile(s.Path); string(got) != "b" {
		t.Fatalf("file holds %q, want b", got)
	}
	second := inode()

	// The directory turns read-only: the write fails, and is retried next time.
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	if os.Getuid() == 0 {
		// root writes anyway: make the path's directory a file instead.
		s.Path = filepath.Join(s.Path, "below-a-file")
	}
	if err := s.Save([]byte("c")); err == nil {
		t.Fatal("a write that cannot succeed reported no error")
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s.Path = filepath.Join(dir, "state.json")
	if err := s.Save([]byte("b")); err != nil || inode() == second {
		t.Fatalf("after a failed write, saving the content of before it: err %v, rewritten %v; want it written again", err, inode() != second)
	}
}
