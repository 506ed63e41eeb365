package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/criguard/criguard/criservice"
)

func runExplain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfg, output := standaloneFlags("explain", stderr, "text", "json")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: criguard explain [flags] CONTAINER_ID|POD_ID\n\nWhat the policy gives a container or pod, why, and the cgroup writes that make it true.")
		fs.PrintDefaults()
	}
	if err := parseStandaloneFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return &exitError{code: 2, err: errUsage}
	}
	return explain(ctx, *cfg, fs.Arg(0), output.value, stdout)
}

func explain(ctx context.Context, cfg serveConfig, id, output string, stdout io.Writer) error {
	st, err := newStandalone(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	ex, err := st.svc.Reporter().Explain(ctx, id)
	if err != nil {
		return err
	}
	if cfg.stateDir == "" {
		for e := &ex; e != nil; e = e.Pod {
			e.Foreign, e.RecordMissing = nil, noStateDir
		}
	}
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ex)
	}
	for _, n := range st.notes {
		fmt.Fprintf(stdout, "note: %s\n", n)
	}
	writeExplanation(stdout, ex, "")
	return nil
}

// noStateDir is why explain and status know no limit as criguard's with
// --state-dir "": their service's record is then an empty one in memory.
const noStateDir = "no --state-dir given, so no record of the limits criguard wrote was read"

func writeExplanation(w io.Writer, ex criservice.Explanation, indent string) {
	p := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%s%-13s %s\n", indent, label+":", fmt.Sprintf(format, args...))
	}
	wl := ex.Workload
	p(ex.Kind, "%s", ex.ID)
	p("pod", "%s/%s (uid %s, id %s)", wl.Namespace, wl.PodName, wl.PodUID, ex.PodID)
	if wl.ContainerName != "" {
		p("container", "%s (image %s)", wl.ContainerName, wl.Image)
	}
	p("qos", "%s", orDash(wl.QoS))
	p("labels", "%s", formatMap(wl.PodLabels))
	p("decision", "%s", ex.Decision.Reason)
	p("source", "%s%s%s", ex.Decision.Source, prefixed(" rule=", ex.Decision.Rule), prefixed(" class=", ex.Decision.Class))
	p("scope", "%s", orDash(string(ex.Decision.Scope)))
	for _, ig := range ex.Decision.Ignored {
		p("ignored", "%s", ig)
	}
	p("resolver", "%s", ex.Resolver)
	p("cgroupsPath", "%s", orDash(ex.CgroupsPath))
	p("cgroup dir", "%s (cgroup v%d)", orDash(ex.Dir), ex.IOVersion)
	p("wanted", "%s", formatLimits(ex.Limits))
	for _, m := range ex.Mounts {
		p(m.Kind, "%s", formatMountDisk(m, ex.Limits))
	}
	p("in force", "%s", formatLimits(ex.Current))
	if len(ex.InForceNotes) > 0 {
		p("class gives", "%s", formatLimits(ex.ClassLimits))
	}
	for _, n := range ex.InForceNotes {
		p("why", "%s", n)
	}
	for _, st := range ex.Resources {
		p("resource", "%s", resourceLine(st))
	}
	for _, w := range ex.Weights {
		p("weight", "%s", weightLine(w))
	}
	switch {
	case ex.RecordMissing != "":
		// Without the record, a limit in force cannot be told criguard's or another tool's.
		p("owner", "unknown: %s", ex.RecordMissing)
	case len(ex.Foreign) > 0:
		p("foreign", "%s (written by another tool; criguard leaves them alone)", formatLimits(ex.Foreign))
	}
	for _, wr := range ex.Writes {
		p("write", "%s <- %q", wr.File, wr.Value)
	}
	switch {
	case ex.Dir == "":
	case len(ex.Pending) == 0:
		p("pending", "none: the cgroup's I/O limits are what the policy says")
	default:
		for _, wr := range ex.Pending {
			p("pending", "%s <- %q", wr.File, wr.Value)
		}
	}
	for _, n := range ex.Notes {
		p("note", "%s", n)
	}
	if ex.Error != "" {
		p("error", "%s", ex.Error)
	}
	if ex.Pod != nil {
		fmt.Fprintf(w, "%spod budget:\n", indent)
		writeExplanation(w, *ex.Pod, indent+"  ")
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

func formatMap(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}
