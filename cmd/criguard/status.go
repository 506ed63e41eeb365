package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
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
			match, withResources(formatLimits(r.Have), r.Resources, false), withResources(formatLimits(r.Want), r.Resources, true), formatLimits(r.Foreign), formatStats(r.Usage), orDash(r.Dir))
	}
	return tw.Flush()
}

func shortID(id string) string {
	if len(id) > 13 {
		return id[:13]
	}
	return id
}
