package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/criguard/criguard/criservice"
)

// Sort orders of `criguard top`; the s key switches between them.
const (
	sortByRate  = "rate"
	sortByLimit = "limit"
)

// topConfig is top's own flags.
type topConfig struct {
	once     bool
	interval time.Duration
	sortBy   string
	output   string
}

func runTop(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfg, output := standaloneFlags("top", stderr, "table", "json")
	tc := topConfig{}
	fs.BoolVar(&tc.once, "once", false, "print one sample (two reads a second apart) and exit")
	fs.DurationVar(&tc.interval, "interval", 2*time.Second, "time between refreshes")
	fs.StringVar(&tc.sortBy, "sort", sortByRate, "rate (bytes/s) or limit (% of limit in use)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: criguard top [flags]\n\nLive disk I/O per pod and container: rates, the limit in force, % of it in use, I/O pressure.\nKeys on a terminal: s switches the sort (rate, % of limit), q quits.")
		fs.PrintDefaults()
	}
	if err := parseStandaloneFlags(fs, args); err != nil {
		return err
	}
	if tc.sortBy != sortByRate && tc.sortBy != sortByLimit {
		return &exitError{code: 2, err: fmt.Errorf("--sort must be %s or %s, got %q", sortByRate, sortByLimit, tc.sortBy)}
	}
	if tc.interval < 100*time.Millisecond {
		return &exitError{code: 2, err: fmt.Errorf("--interval must be at least 100ms, got %s", tc.interval)}
	}
	tc.output = output.value
	return top(ctx, *cfg, tc, stdout, stderr)
}

// topSampler keeps the previous sample, so each refresh gives rates.
type topSampler struct {
	reporter *criservice.Reporter
	prev     []criservice.Usage
}

// sample lists what runs (new containers get their cgroup resolved once), reads
// every cgroup and returns the rates since the previous call.
func (s *topSampler) sample(ctx context.Context) ([]criservice.Rate, error) {
	if err := s.reporter.TrackRunning(ctx); err != nil {
		return nil, err
	}
	cur := s.reporter.SampleUsage()
	rates := criservice.Rates(s.prev, cur)
	s.prev = cur
	return rates, nil
}

func top(ctx context.Context, cfg serveConfig, tc topConfig, stdout, stderr io.Writer) error {
	st, err := newStandalone(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, n := range st.notes {
		fmt.Fprintf(stderr, "note: %s\n", n)
	}
	sampler := &topSampler{reporter: st.svc.Reporter()}
	if _, err := sampler.sample(ctx); err != nil {
		return err
	}
	// The first rates need a second read; a second is enough and keeps --once quick.
	if !sleep(ctx, min(time.Second, tc.interval)) {
		return nil
	}
	if tc.once {
		rates, err := sampler.sample(ctx)
		if err != nil {
			return err
		}
		return writeTop(stdout, tc, rates, time.Now(), nil)
	}
	term := openTerminal(stdout)
	defer term.restore()
	ticker := time.NewTicker(tc.interval)
	defer ticker.Stop()
	rates, err := sampler.sample(ctx)
	for {
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			// The first sample worked: a runtime that stops answering for a while
			// does not end the view; the next refresh tries again.
			fmt.Fprintf(stderr, "criguard top: %s: %v\n", time.Now().Format("15:04:05"), err)
		default:
			if err := writeTop(stdout, tc, rates, time.Now(), term); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			rates, err = sampler.sample(ctx)
		case key := <-term.keyPresses():
			switch key {
			case 'q', 'Q':
				return nil
			case 's', 'S':
				// Redraw the same sample in the other order: a sample taken now
				// would be over a shorter interval, and noisier.
				tc.sortBy = otherSort(tc.sortBy)
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// topSample is `criguard top -o json`: one object per refresh.
type topSample struct {
	Time      time.Time         `json:"time"`
	SortedBy  string            `json:"sortedBy"`
	Workloads []criservice.Rate `json:"workloads"`
}

// writeTop writes one refresh. On a terminal it redraws the screen and shows
// as many rows as fit; elsewhere it appends plain text or one JSON line.
func writeTop(w io.Writer, tc topConfig, rates []criservice.Rate, now time.Time, term *terminal) error {
	sortRates(rates, tc.sortBy)
	if tc.output == "json" {
		if rates == nil {
			rates = []criservice.Rate{}
		}
		return json.NewEncoder(w).Encode(topSample{Time: now.UTC(), SortedBy: tc.sortBy, Workloads: rates})
	}
	rows := rates
	var b strings.Builder
	if term.live() {
		b.WriteString("\x1b[H\x1b[2J") // home, clear
		if height := term.height(); height > 4 && len(rows) > height-4 {
			rows = rows[:height-4]
		}
		fmt.Fprintf(&b, "criguard top  %s  %d rows, sorted by %s  (s: sort by %s, q: quit)\n\n", now.Format("15:04:05"),
			len(rates), sortName(tc.sortBy), sortName(otherSort(tc.sortBy)))
	} else if !tc.once {
		fmt.Fprintf(&b, "%s  %d rows, sorted by %s\n", now.Format(time.RFC3339), len(rates), sortName(tc.sortBy))
	}
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE/POD\tCONTAINER\tDEVICE\tREAD/s\tWRITE/s\tR-IOPS\tW-IOPS\tLIMIT\tCLASS\t% LIMIT\tPSI SOME/FULL")
	for _, r := range rows {
		container := r.Container
		if r.Kind == "pod" {
			container = "(pod budget)"
		}
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%s\t%s\t%s\t%s\n", r.Namespace, r.Pod, orDash(container), orDash(r.Device),
			rateBytes(r.ReadBPS), rateBytes(r.WriteBPS), r.ReadIOPS, r.WriteIOPS, compactLimit(r.Limit), classLimit(r), percent(r.PercentOfLimit), pressure(r))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !term.live() && !tc.once {
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// otherSort is the order the s key switches to.
func otherSort(by string) string {
	if by == sortByRate {
		return sortByLimit
	}
	return sortByRate
}

func sortName(by string) string {
	if by == sortByLimit {
		return "% of limit"
	}
	return "rate"
}

// sortRates orders by bytes/s (then IOPS), or by % of limit with unlimited
// rows last; names break ties so rows do not jump between refreshes.
func sortRates(rates []criservice.Rate, by string) {
	byRate := func(a, b criservice.Rate) int {
		return cmp.Or(cmp.Compare(b.ReadBPS+b.WriteBPS, a.ReadBPS+a.WriteBPS), cmp.Compare(b.ReadIOPS+b.WriteIOPS, a.ReadIOPS+a.WriteIOPS))
	}
	byName := func(a, b criservice.Rate) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Pod, b.Pod), cmp.Compare(a.Container, b.Container),
			cmp.Compare(a.Device, b.Device))
	}
	slices.SortStableFunc(rates, func(a, b criservice.Rate) int {
		if by == sortByLimit {
			if c := cmp.Compare(percentKey(b.PercentOfLimit), percentKey(a.PercentOfLimit)); c != 0 {
				return c
			}
		}
		return cmp.Or(byRate(a, b), byName(a, b))
	})
}

func percentKey(p *float64) float64 {
	if p == nil {
		return -1
	}
	return *p
}

func rateBytes(v float64) string {
	if v < 0.5 {
		return "0"
	}
	return humanBytes(uint64(v + 0.5))
}

func percent(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", *p)
}

func pressure(r criservice.Rate) string {
	if r.PressureSome == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f%%/%.0f%%", *r.PressureSome, *r.PressureFull)
}

// classLimit is the class's limit beside the one in force: "=" when the same, the
// class's when a loop holds another (a burst above it, protection below it), "-"
// when not known.
func classLimit(r criservice.Rate) string {
	switch {
	case r.ClassLimit == nil:
		return "-"
	case *r.ClassLimit == r.Limit:
		return "="
	}
	return compactLimit(*r.ClassLimit)
}

// compactLimit shows only the keys that are limited: "w=1MiB r=2MiB wiops=20".
func compactLimit(l criservice.Limit) string {
	var parts []string
	if l.ReadBPS != 0 {
		parts = append(parts, "r="+formatBytes(l.ReadBPS))
	}
	if l.WriteBPS != 0 {
		parts = append(parts, "w="+formatBytes(l.WriteBPS))
	}
	if l.ReadIOPS != 0 {
		parts = append(parts, fmt.Sprintf("riops=%d", l.ReadIOPS))
	}
	if l.WriteIOPS != 0 {
		parts = append(parts, fmt.Sprintf("wiops=%d", l.WriteIOPS))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// terminal is stdout when it is a terminal: the screen is redrawn in place and
// single key presses are read from stdin without waiting for Enter. Its zero
// value (nil) is plain output.
type terminal struct {
	out   int
	in    int
	saved *unix.Termios
	keys  chan byte
}

// openTerminal returns nil unless stdout is a terminal. Keys are read when
// stdin is one too; echo and line buffering are turned off, but not signals:
// Ctrl-C still ends top.
func openTerminal(stdout io.Writer) *terminal {
	f, ok := stdout.(*os.File)
	if !ok || !isTerminal(int(f.Fd())) {
		return nil
	}
	t := &terminal{out: int(f.Fd()), in: int(os.Stdin.Fd()), keys: make(chan byte, 1)}
	saved, err := unix.IoctlGetTermios(t.in, unix.TCGETS)
	if err != nil {
		return t // no keys; the view still refreshes
	}
	raw := *saved
	raw.Lflag &^= unix.ICANON | unix.ECHO
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if unix.IoctlSetTermios(t.in, unix.TCSETS, &raw) != nil {
		return t
	}
	t.saved = saved
	go func() {
		buf := make([]byte, 1)
		for {
			if n, err := os.Stdin.Read(buf); err != nil || n == 0 {
				return
			}
			select {
			case t.keys <- buf[0]:
			default: // a key already waits
			}
		}
	}()
	return t
}

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

func (t *terminal) live() bool { return t != nil }

// keyPresses is nil, which never delivers, when there is no terminal.
func (t *terminal) keyPresses() <-chan byte {
	if t == nil {
		return nil
	}
	return t.keys
}

func (t *terminal) height() int {
	ws, err := unix.IoctlGetWinsize(t.out, unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Row)
}

func (t *terminal) restore() {
	if t != nil && t.saved != nil {
		unix.IoctlSetTermios(t.in, unix.TCSETS, t.saved)
	}
}
