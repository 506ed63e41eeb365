package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice"
)

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfg, output := standaloneFlags("status", stderr, "table", "wide", "json")
	if err := parseStandaloneFlags(fs, args); err != nil {
		return err
	}
	return status(ctx, *cfg, output.value, stdout, stderr)
}

func status(ctx context.Context, cfg serveConfig, output string, stdout, stderr io.Writer) error {
	st, err := newStandalone(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	reports, err := st.svc.Reporter().Status(ctx)
	if err != nil {
		return err
	}
	if cfg.stateDir == "" {
		for i := range reports {
			reports[i].Foreign, reports[i].RecordMissing = nil, noStateDir
		}
	}
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(reports)
	}
	for _, n := range st.notes {
		fmt.Fprintf(stderr, "note: %s\n", n)
	}
	if cfg.stateDir != "" {
		fmt.Fprintf(stderr, "note: %s\n", kubeletNote(cfg.stateDir, time.Now()))
	}
	if len(reports) > 0 && reports[0].RecordMissing != "" {
		fmt.Fprintf(stderr, "note: which limits are criguard's is unknown: %s\n", reports[0].RecordMissing)
	}
	columns := narrowStatusColumns
	if output == "wide" {
		columns = wideStatusColumns
	}
	return writeStatusTable(stdout, columns, reports)
}

// statusColumn is one column of the status table.
type statusColumn struct {
	header string
	// width is the most runes a cell may take; longer ones are cut with an
	// ellipsis. 0: never cut.
	width int
	// cutMiddle keeps both ends of a cut cell.
	cutMiddle bool
	cell      func(criservice.Report) string
}

// statusPadding is the spaces tabwriter puts between columns.
const statusPadding = 2

// narrowStatusColumns is the default table: the widths and the padding add up to
// 120, so a row fits a terminal whatever the names are. -o wide has the rest.
var narrowStatusColumns = []statusColumn{
	{header: "KIND", width: 9, cell: func(r criservice.Report) string { return r.Kind }},
	{header: "ID", width: 13, cell: func(r criservice.Report) string { return shortID(r.ID) }},
	// Cut in the middle: the namespace and the suffix that tells replicas apart both stay.
	{header: "NAMESPACE/POD", width: 27, cutMiddle: true, cell: namespacePod},
	{header: "CONTAINER", width: 14, cell: func(r criservice.Report) string { return orDash(r.Container) }},
	{header: "MATCH", width: 5, cell: func(r criservice.Report) string { return matchWord(r) }},
	{header: "IN FORCE", width: 24, cell: limitsSummary},
	{header: "NOTE", width: 16, cell: statusNote},
}

// wideStatusColumns is -o wide: every column in full.
var wideStatusColumns = []statusColumn{
	{header: "KIND", cell: func(r criservice.Report) string { return r.Kind }},
	{header: "ID", cell: func(r criservice.Report) string { return shortID(r.ID) }},
	{header: "NAMESPACE/POD", cell: namespacePod},
	{header: "CONTAINER", cell: func(r criservice.Report) string { return orDash(r.Container) }},
	{header: "MATCH", cell: func(r criservice.Report) string {
		if r.Error != "" {
			return "ERROR: " + r.Error
		}
		return matchWord(r)
	}},
	{header: "IN FORCE (read back)", cell: func(r criservice.Report) string {
		return withResources(formatLimits(r.Have), r.Resources, false)
	}},
	{header: "WANTED", cell: func(r criservice.Report) string {
		return withResources(formatLimits(r.Want), r.Resources, true)
	}},
	{header: "CLASS (where in force differs)", cell: func(r criservice.Report) string {
		if r.Class == nil {
			return "="
		}
		return formatLimits(r.Class)
	}},
	{header: "WEIGHTS", cell: weightsColumn},
	{header: "FOREIGN (not criguard's)", cell: foreignColumn},
	{header: "USAGE", cell: func(r criservice.Report) string { return formatStats(r.Usage) }},
	{header: "CGROUP", cell: func(r criservice.Report) string { return orDash(r.Dir) }},
	{header: "NOTE", cell: statusNote},
}

func writeStatusTable(w io.Writer, columns []statusColumn, reports []criservice.Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, statusPadding, ' ', 0)
	cells := make([]string, len(columns))
	for i, c := range columns {
		cells[i] = c.header
	}
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
	for _, r := range reports {
		for i, c := range columns {
			cells[i] = cut(c.cell(r), c.width, c.cutMiddle)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// cut shortens s to at most width runes, an ellipsis standing for what was
// left out: at the end, or in the middle.
func cut(s string, width int, middle bool) string {
	runes := []rune(s)
	if width == 0 || len(runes) <= width {
		return s
	}
	head := width - 1
	tail := 0
	if middle {
		head = width / 2
		tail = width - 1 - head
	}
	return string(runes[:head]) + "…" + string(runes[len(runes)-tail:])
}

func namespacePod(r criservice.Report) string { return r.Namespace + "/" + r.Pod }

// matchWord says whether the cgroup holds what the policy wants: yes, no, or
// error when it could not be told (-o wide and explain say why).
func matchWord(r criservice.Report) string {
	switch {
	case r.Error != "":
		return "error"
	case !r.Match:
		return "no"
	}
	return "yes"
}

// limitsSummary is the narrow table's IN FORCE: the limits read back, only the
// ones set, the device named only when there are several.
func limitsSummary(r criservice.Report) string {
	var devices []string
	for _, l := range r.Have {
		set := setLimits(l)
		if set == "" {
			continue
		}
		if len(r.Have) > 1 {
			set = l.Device.String() + " " + set
		}
		devices = append(devices, set)
	}
	var parts []string
	if len(devices) > 0 {
		parts = append(parts, strings.Join(devices, "; "))
	}
	for _, st := range r.Resources {
		parts = append(parts, st.File+"="+strings.ReplaceAll(orDash(st.Have), " ", "/"))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// setLimits is formatLimit without the device and the limits not set.
func setLimits(l cgroup.IOLimit) string {
	var set []string
	for _, kv := range []struct {
		key   string
		value uint64
		text  func(uint64) string
	}{
		{"rbps", l.ReadBPS, formatBytes}, {"wbps", l.WriteBPS, formatBytes},
		{"riops", l.ReadIOPS, formatCount}, {"wiops", l.WriteIOPS, formatCount},
	} {
		if kv.value != 0 {
			set = append(set, kv.key+"="+kv.text(kv.value))
		}
	}
	return strings.Join(set, " ")
}

// statusNote flags what a row has beyond its match: limits another tool wrote
// (foreign), keys left to the cgroup's systemd unit (systemd), and settings in
// sync only because this host cannot enforce them (unenforced).
func statusNote(r criservice.Report) string {
	var flags []string
	if len(r.Foreign) > 0 {
		flags = append(flags, "foreign")
	}
	if len(r.Conflicts) > 0 {
		flags = append(flags, "systemd")
	}
	for _, why := range []string{"yielding", "bursting"} {
		if slices.ContainsFunc(r.InForceNotes, func(n string) bool { return strings.Contains(n, ": "+why) }) {
			flags = append(flags, why)
		}
	}
	for _, st := range r.Resources {
		// A row matches with a setting out of sync only when the host cannot enforce it.
		if r.Match && !st.InSync {
			flags = append(flags, "unenforced")
			break
		}
	}
	if len(flags) == 0 {
		return "-"
	}
	return strings.Join(flags, ",")
}

func shortID(id string) string {
	if len(id) > 13 {
		return id[:13]
	}
	return id
}

// weightsColumn is the cgroup's weights: "400 on 254:0 (in force 400)", or
// "not enforced" where the disk's scheduler ignores them.
func weightsColumn(r criservice.Report) string {
	if len(r.Weights) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(r.Weights))
	for _, w := range r.Weights {
		if !w.Enforced {
			parts = append(parts, fmt.Sprintf("%d on %s (not enforced)", w.Weight, w.Device))
			continue
		}
		parts = append(parts, fmt.Sprintf("%d on %s (%s in force %s)", w.Weight, w.Device, w.File, haveOrNone(w.Have)))
	}
	return strings.Join(parts, "; ")
}

// foreignColumn is the limits another tool wrote, or "unknown" without the record
// that tells them from criguard's.
func foreignColumn(r criservice.Report) string {
	if r.RecordMissing != "" {
		return "unknown (no record)"
	}
	return formatLimits(r.Foreign)
}
