package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice"
	"github.com/criguard/criguard/policy"
	"github.com/criguard/criguard/proxy"
)

// standalone is what explain and status run on: their own connection to the
// runtime and their own read of the policy, so they work with the daemon down.
type standalone struct {
	svc    *criservice.Service
	conn   *grpc.ClientConn
	policy *policy.Policy
	notes  []string
}

// standaloneFlags are the flags of explain and status: serve's runtime,
// policy and resolver flags, and -o with the command's formats (the first is
// the default).
func standaloneFlags(name string, stderr io.Writer, formats ...string) (*flag.FlagSet, *serveConfig, *outputFormat) {
	cfg := &serveConfig{}
	fs := newFlagSet(name, stderr)
	addRuntimeFlags(fs, cfg)
	output := &outputFormat{value: formats[0], allowed: formats}
	fs.Var(output, "o", "output format: "+oneOf(formats))
	return fs, cfg, output
}

// outputFormat is -o, checked when parsed.
type outputFormat struct {
	value   string
	allowed []string
}

func (o *outputFormat) String() string { return o.value }

func (o *outputFormat) Set(s string) error {
	if !slices.Contains(o.allowed, s) {
		return fmt.Errorf("want %s", oneOf(o.allowed))
	}
	o.value = s
	return nil
}

// oneOf lists choices for people: "a or b", "a, b or c".
func oneOf(choices []string) string {
	if len(choices) < 2 {
		return strings.Join(choices, "")
	}
	last := len(choices) - 1
	return strings.Join(choices[:last], ", ") + " or " + choices[last]
}

func newStandalone(cfg serveConfig) (*standalone, error) {
	conn, err := proxy.Dial(cfg.runtimeEndpoint, proxy.DefaultMaxMsgSize)
	if err != nil {
		return nil, err
	}
	st := &standalone{conn: conn}
	st.policy, err = policy.Load(cfg.policyPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st.notes = append(st.notes, fmt.Sprintf("no policy file at %s: nothing is throttled", cfg.policyPath))
	case err != nil:
		conn.Close()
		return nil, err
	}
	current := func() *policy.Policy { return st.policy }
	st.svc, err = newService(cfg, runtimeapi.NewRuntimeServiceClient(conn), current, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		conn.Close()
		return nil, err
	}
	st.notes = append(st.notes, protectionFromState(cfg, st.svc)...)
	return st, nil
}

func (st *standalone) Close() {
	st.svc.Close()
	st.conn.Close()
}

// formatLimit renders one device's limits for people: "254:0 rbps=2MiB wbps=1MiB riops=- wiops=20".
func formatLimit(l cgroup.IOLimit) string {
	return fmt.Sprintf("%s rbps=%s wbps=%s riops=%s wiops=%s", l.Device,
		formatBytes(l.ReadBPS), formatBytes(l.WriteBPS), formatCount(l.ReadIOPS), formatCount(l.WriteIOPS))
}

func formatLimits(ls []cgroup.IOLimit) string {
	if len(ls) == 0 {
		return "none"
	}
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = formatLimit(l)
	}
	return strings.Join(parts, "; ")
}

func formatCount(n uint64) string {
	if n == 0 {
		return "-"
	}
	return strconv.FormatUint(n, 10)
}

// formatBytes is policy.FormatBytes for people: "-" for no limit, "B" on bare bytes.
func formatBytes(n uint64) string {
	if n == 0 {
		return "-"
	}
	text := policy.FormatBytes(n)
	if last := text[len(text)-1]; last >= '0' && last <= '9' {
		return text + "B"
	}
	return text
}

// formatStats renders usage: "254:0 read=12MiB/340 write=3MiB/48".
func formatStats(stats []cgroup.IOStat) string {
	if len(stats) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(stats))
	for _, s := range stats {
		parts = append(parts, fmt.Sprintf("%s read=%s/%d write=%s/%d", s.Device, humanBytes(s.ReadBytes), s.ReadIOs, humanBytes(s.WriteBytes), s.WriteIOs))
	}
	return strings.Join(parts, "; ")
}

func humanBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
