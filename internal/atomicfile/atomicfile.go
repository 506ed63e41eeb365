// Package atomicfile replaces a file so that a reader, a crash or a power cut leaves
// the old content or the new one, never half of it, and never an empty file.
package atomicfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data: it writes a temporary file in the same directory,
// fsyncs it, renames it over path and fsyncs the directory, so that the rename itself
// survives a power cut. The directory is created (0700) if missing; the file is 0600.
func Write(path string, data []byte) error { return replace(path, data, true) }

// WriteHint replaces path with data through the same rename, so a reader sees the old
// content or the new, but without the fsyncs (two cost about 1 ms of CPU and a
// journal commit): for a record rewritten often whose loss costs nothing. A power cut
// may lose the last writes, or leave the file empty until the next one.
func WriteHint(path string, data []byte) error { return replace(path, data, false) }

func replace(path string, data []byte, durable bool) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	// Without this, a power cut after the rename can leave path empty: ext4 and xfs
	// may commit the rename before the data.
	if durable {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// Saver writes one file through Write, skipping a write whose content the file
// already holds: a loop that saves its state every few seconds costs no write and
// no fsync while the state stands still.
type Saver struct {
	Path string
	last []byte // what the last successful Save wrote; nil: nothing since start
}

// Save replaces the file with data unless it was the last data saved.
func (s *Saver) Save(data []byte) error {
	if s.last != nil && bytes.Equal(data, s.last) {
		return nil
	}
	if err := Write(s.Path, data); err != nil {
		s.last = nil
		return err
	}
	s.last = data
	return nil
}
