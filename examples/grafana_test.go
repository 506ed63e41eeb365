package examples

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/criguard/criguard/criservice"
)

// cAdvisorMetrics are the kubelet cAdvisor series the dashboard may use next
// to criguard's: they exist without --metrics-workloads.
var cAdvisorMetrics = []string{
	"container_fs_reads_bytes_total",
	"container_fs_writes_bytes_total",
	"container_fs_reads_total",
	"container_fs_writes_total",
	"container_blkio_device_usage_total",
	"container_pressure_io_stalled_seconds_total",
	"container_pressure_io_waiting_seconds_total",
}

// describedNames records the name of every metric a collector describes.
type describedNames map[string]bool

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d describedNames) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d[m[1]] = true
		}
	}
	return nil
}

func (d describedNames) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		d.Register(c)
	}
}

func (describedNames) Unregister(prometheus.Collector) bool { return false }

// criguardMetrics is every metric name criguard serve can export, as serve
// registers them.
func criguardMetrics() describedNames {
	names := describedNames{}
	names.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	criservice.NewMetrics(names)
	// Describe needs no reporter: the collector's descriptions are fixed.
	names.MustRegister((*criservice.Reporter)(nil).WorkloadCollector())
	return names
}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	// The labels of by (…), without (…), on (…) and the like are not metrics.
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promWord     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	labelValues  = regexp.MustCompile(`^label_values\((.*),\s*\w+\s*\)$`)
	promKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
)

// metricNames are the metric names a PromQL expression reads: words that are
// not functions, keywords, label names or literals.
func metricNames(expr string) []string {
	// Grafana's label_values(SELECTOR, LABEL) names a label after the selector.
	expr = labelValues.ReplaceAllString(expr, "$1")
	expr = promString.ReplaceAllString(expr, `""`)
	expr = promMatchers.ReplaceAllString(expr, " ")
	expr = promGrouping.ReplaceAllString(expr, " ")
	expr = regexp.MustCompile(`\$\{?\w+\}?`).ReplaceAllString(expr, " ")
	var names []string
	for _, m := range promWord.FindAllStringSubmatch(expr, -1) {
		word := strings.TrimRight(m[0], " (")
		if m[1] != "" || slices.Contains(promKeywords, word) {
			continue // a function call or a keyword
		}
		names = append(names, word)
	}
	return names
}

type grafanaPanel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

// Every metric the dashboard queries is one criguard exports (histograms by
// their series) or one of cAdvisor's.
func TestGrafanaDashboardQueriesExistingMetrics(t *testing.T) {
	var dashboard struct {
		Title      string         `json:"title"`
		UID        string         `json:"uid"`
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal([]byte(read(t, "grafana/criguard.json")), &dashboard); err != nil {
		t.Fatalf("grafana/criguard.json: %v", err)
	}
	if dashboard.Title == "" || dashboard.UID == "" {
		t.Error("the dashboard has no title or uid")
	}
	exported := criguardMetrics()
	known := func(name string) bool {
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && exported[base] {
				return true
			}
		}
		return slices.Contains(cAdvisorMetrics, name)
	}
	var exprs []string
	var walk func([]grafanaPanel)
	walk = func(panels []grafanaPanel) {
		for _, p := range panels {
			for _, target := range p.Targets {
				if strings.TrimSpace(target.Expr) == "" {
					t.Errorf("panel %q has a target with no query", p.Title)
				}
				exprs = append(exprs, target.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(dashboard.Panels)
	for _, v := range dashboard.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			exprs = append(exprs, q["query"].(string))
		}
	}
	used := map[string]bool{}
	for _, expr := range exprs {
		names := metricNames(expr)
		if len(names) == 0 && !strings.HasPrefix(expr, "prometheus") {
			t.Errorf("query reads no metric: %q", expr)
		}
		for _, name := range names {
			used[name] = true
			if !known(name) {
				t.Errorf("the dashboard queries %s, which neither criguard nor cAdvisor exports:\n  %s", name, expr)
			}
		}
	}
	for _, must := range []string{"criguard_io_limit", "criguard_io_bytes_total", "criguard_io_operations_total", "criguard_io_pressure_stalled_seconds_total"} {
		if !used[must] {
			t.Errorf("the dashboard never shows %s", must)
		}
	}
}

func TestMetricNamesOfPromQL(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (namespace, pod) (rate(criguard_io_bytes_total{op="write",pod=~"$pod"}[$__rate_interval]))`: {"criguard_io_bytes_total"},
		`rate(a_total[5m]) / ignoring(op) group_left b{op="x"}`:                                             {"a_total", "b"},
		`label_replace(x, "key", "read_bps", "", "") or y`:                                                  {"x", "y"},
		`histogram_quantile(0.99, sum by (le) (rate(h_bucket[1m])))`:                                        {"h_bucket"},
		`label_values(criguard_io_bytes_total{namespace=~"$namespace"}, pod)`:                               {"criguard_io_bytes_total"},
	} {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("metricNames(%q) = %q, want %q", expr, got, want)
		}
	}
}

// docs/metrics.md names every metric criguard serve exports (the Go and process
// collectors' standard series apart).
func TestMetricsReferenceIsComplete(t *testing.T) {
	doc := read(t, "../docs/metrics.md")
	checked := 0
	for name := range criguardMetrics() {
		if !strings.HasPrefix(name, "criguard_") {
			continue
		}
		checked++
		if !strings.Contains(doc, "`"+name) {
			t.Errorf("docs/metrics.md does not describe %s", name)
		}
	}
	if checked < 10 {
		t.Errorf("only %d criguard_ metrics found registered; the lookup is broken", checked)
	}
}
