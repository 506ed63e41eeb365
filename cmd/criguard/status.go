package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/criguard/criguard/criservice"
)

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfg, output := standaloneFlags("status", stderr, "table", "json")
	if err := parseFlags(fs, args); err != nil {
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
	reports, err := st.svc.Status(ctx)
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
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tID\tNAMESPACE/POD\tCONTAINER\tMATCH\tIN FORCE (read back)\tWANTED\tFOREIGN (not criguard's)\tUSAGE\tCGROUP")
	for _, r := range reports {
		match := "yes"
		switch {
		case r.Error != "":
			match = "ERROR: " + r.Error
		case !r.Match:
			match = "no"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s/%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Kind, shortID(r.ID), r.Namespace, r.Pod, orDash(r.Container),
			match, withResources(formatLimits(r.Have), r.Resources, false), withResources(formatLimits(r.Want), r.Resources, true), foreignColumn(r), formatStats(r.Usage), orDash(r.Dir))
	}
	return tw.Flush()
}

func shortID(id string) string {
	if len(id) > 13 {
		return id[:13]
	}
	return id
}

// foreignColumn is the limits another tool wrote, or "unknown" without the record
// that tells them from criguard's.
func foreignColumn(r criservice.Report) string {
	if r.RecordMissing != "" {
		return "unknown (no record)"
	}
	return formatLimits(r.Foreign)
}
