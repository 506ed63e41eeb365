package cgroup

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// ParseProcCgroup parses /proc/PID/cgroup ("ID:CONTROLLERS:PATH" per line)
// into controller → path. The v2 line "0::PATH" is under the key "";
// "3:cpu,cpuacct:/x" gives both "cpu" and "cpuacct".
func ParseProcCgroup(r io.Reader) (map[string]string, error) {
	paths := map[string]string{}
	scanner := bufio.NewScanner(r)
	for lineNo := 1; scanner.Scan(); lineNo++ {
		line := scanner.Text()
		if line == "" {
			continue
		}
		id, rest, ok := strings.Cut(line, ":")
		controllers, path, ok2 := strings.Cut(rest, ":")
		if !ok || !ok2 || id == "" || !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("%w: line %d %q: want ID:CONTROLLERS:/PATH", ErrProcCgroup, lineNo, line)
		}
		for _, controller := range strings.Split(controllers, ",") {
			paths[controller] = path
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProcCgroup, err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%w: no entries", ErrProcCgroup)
	}
	return paths, nil
}
