package policy

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Resources are a class's throttles beyond disk I/O. They always bind each container
// on its own, whatever the rule's scope: the pod's cgroup is kubelet's. 0 means unset.
type Resources struct {
	// PidsMax caps the container's tasks (pids.max on v1 and v2).
	PidsMax uint64 `json:"pidsMax,omitempty"`
	// MemoryHigh is a soft memory ceiling in bytes (memory.high, cgroup v2 only).
	MemoryHigh uint64 `json:"memoryHigh,omitempty"`
	// MemoryHighPercent is the ceiling as a share of the container's memory limit,
	// 1 to 100; a container without a limit gets none.
	MemoryHighPercent uint64 `json:"memoryHighPercent,omitempty"`
	// CPUWeight is the cgroup v2 cpu.weight scale, 1 to 10000 (100 is one default
	// share); on v1 it becomes cpu.shares.
	CPUWeight uint64 `json:"cpuWeight,omitempty"`
	// CPUMaxMilli caps CPU time in thousandths of a CPU (cpu.max, or the v1 CFS quota).
	CPUMaxMilli uint64 `json:"cpuMaxMilli,omitempty"`
}

// IsZero reports whether nothing is set.
func (r Resources) IsZero() bool { return r == Resources{} }

// MemoryHighSet reports whether a memory ceiling is asked for, in bytes or percent.
func (r Resources) MemoryHighSet() bool { return r.MemoryHigh != 0 || r.MemoryHighPercent != 0 }

// Tighten is the stricter of r and o for each setting, 0 being unset. A ceiling in
// bytes and one in percent both stay: the container gets the lower of the two.
func (r Resources) Tighten(o Resources) Resources {
	return Resources{
		PidsMax:           tightest(r.PidsMax, o.PidsMax),
		MemoryHigh:        tightest(r.MemoryHigh, o.MemoryHigh),
		MemoryHighPercent: tightest(r.MemoryHighPercent, o.MemoryHighPercent),
		CPUWeight:         tightest(r.CPUWeight, o.CPUWeight),
		CPUMaxMilli:       tightest(r.CPUMaxMilli, o.CPUMaxMilli),
	}
}

// String lists what is set, as the policy writes it.
func (r Resources) String() string {
	var parts []string
	if r.PidsMax != 0 {
		parts = append(parts, fmt.Sprintf("pids.max=%d", r.PidsMax))
	}
	if r.MemoryHigh != 0 {
		parts = append(parts, "memory.high="+FormatBytes(r.MemoryHigh))
	}
	if r.MemoryHighPercent != 0 {
		parts = append(parts, fmt.Sprintf("memory.high=%d%% of the limit", r.MemoryHighPercent))
	}
	if r.CPUWeight != 0 {
		parts = append(parts, fmt.Sprintf("cpu.weight=%d", r.CPUWeight))
	}
	if r.CPUMaxMilli != 0 {
		parts = append(parts, "cpu.max="+FormatMilliCPU(r.CPUMaxMilli))
	}
	return strings.Join(parts, " ")
}

// FormatMilliCPU renders thousandths of a CPU as the policy accepts them ("500m", "2").
func FormatMilliCPU(m uint64) string {
	if m%1000 == 0 {
		return strconv.FormatUint(m/1000, 10)
	}
	return strconv.FormatUint(m, 10) + "m"
}

// Bounds of the kernel's cpu.weight.
const (
	CPUWeightMin = 1
	CPUWeightMax = 10000
)

var (
	pidsSchema   = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "max", Required: true}}}
	memorySchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "high", Required: true}}}
	cpuSchema    = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "weight"}, {Name: "max"}}}
)

// decodeResources reads a class's pids, memory and cpu blocks, at most one of each.
func (d *decoder) decodeResources(class string, blocks map[string]hcl.Blocks, into *Resources) bool {
	ok := true
	for _, kind := range []string{"pids", "memory", "cpu"} {
		for i, b := range blocks[kind] {
			if i > 0 {
				d.errorf(b.DefRange, "Duplicate "+kind+" block",
					"Class %q already has a %s block at %s; put its settings in one block.", class, kind, rangeLine(blocks[kind][0].DefRange))
				ok = false
				continue
			}
			switch kind {
			case "pids":
				ok = d.decodePids(b, into) && ok
			case "memory":
				ok = d.decodeMemory(b, into) && ok
			case "cpu":
				ok = d.decodeCPU(b, into) && ok
			}
		}
	}
	return ok
}

func (d *decoder) decodePids(b *hcl.Block, into *Resources) bool {
	content := d.content(b.Body, pidsSchema)
	attr := content.Attributes["max"]
	if attr == nil {
		return false // reported by Content as a missing required argument
	}
	n, ok := d.wholeValue(attr, 1, MaxPids, fmt.Sprintf("a whole number of processes and threads, at most %d (the kernel's PID_MAX_LIMIT)", MaxPids), "max = 512")
	into.PidsMax = n
	return ok
}

func (d *decoder) decodeMemory(b *hcl.Block, into *Resources) bool {
	content := d.content(b.Body, memorySchema)
	attr := content.Attributes["high"]
	if attr == nil {
		return false
	}
	v, ok := d.value(attr)
	if !ok {
		return false
	}
	if v.Type() == cty.String && strings.HasSuffix(strings.TrimSpace(v.AsString()), "%") {
		text := strings.TrimSuffix(strings.TrimSpace(v.AsString()), "%")
		n, err := strconv.ParseUint(strings.TrimSpace(text), 10, 64)
		if err != nil || n < 1 || n > 100 {
			d.errorf(attr.Expr.Range(), "Invalid memory share",
				"high = %s is refused: a share of the container's memory limit is a whole percentage from 1%% to 100%%, e.g. high = \"90%%\".", quoteQuantity(v.AsString()))
			return false
		}
		into.MemoryHighPercent = n
		return true
	}
	n, ok := d.quantityValue(attr, true)
	if ok && n == 0 {
		d.errorf(attr.Expr.Range(), "Invalid byte quantity",
			"high = 0 would be no ceiling; remove the memory block, or give a size such as \"1GiB\" or a share of the limit such as \"90%%\".")
		return false
	}
	into.MemoryHigh = n
	return ok
}

func (d *decoder) decodeCPU(b *hcl.Block, into *Resources) bool {
	before := len(d.diags)
	content := d.content(b.Body, cpuSchema)
	ok := len(d.diags) == before
	weight, limit := content.Attributes["weight"], content.Attributes["max"]
	if weight == nil && limit == nil {
		if ok {
			d.errorf(b.DefRange, "cpu block sets no limit",
				"Set weight (%d to %d, 100 is a default share), max (CPUs, e.g. \"500m\" or 2), or both.", CPUWeightMin, CPUWeightMax)
		}
		return false
	}
	if weight != nil {
		n, good := d.wholeValue(weight, CPUWeightMin, CPUWeightMax,
			fmt.Sprintf("a cpu.weight from %d to %d (100 is a default share)", CPUWeightMin, CPUWeightMax), "weight = 50")
		into.CPUWeight = n
		ok = ok && good
	}
	if limit != nil {
		n, good := d.milliCPUValue(limit)
		into.CPUMaxMilli = n
		ok = ok && good
	}
	return ok
}

// wholeValue reads a whole number in [lo, hi], given as a number or a string of digits.
func (d *decoder) wholeValue(attr *hcl.Attribute, lo, hi uint64, what, example string) (uint64, bool) {
	v, ok := d.value(attr)
	if !ok {
		return 0, false
	}
	var n uint64
	var problem string
	switch v.Type() {
	case cty.Number:
		n, problem = wholeNumber(v.AsBigFloat())
	case cty.String:
		n, problem = parseCount(v.AsString())
	default:
		d.typeError(attr, what, example, v)
		return 0, false
	}
	if problem == "" && (n < lo || n > hi) {
		problem = fmt.Sprintf("outside %d to %d", lo, hi)
	}
	if problem != "" {
		d.errorf(attr.Expr.Range(), "Invalid "+attr.Name, "%s is refused: %s. Write %s, e.g. %s.",
			attr.Name, problem, what, example)
		return 0, false
	}
	return n, true
}

// milliCPUValue reads CPUs as Kubernetes writes them: 2, 0.5, "1.5" or "500m".
func (d *decoder) milliCPUValue(attr *hcl.Attribute) (uint64, bool) {
	v, ok := d.value(attr)
	if !ok {
		return 0, false
	}
	var milli *big.Rat
	switch v.Type() {
	case cty.Number:
		milli = new(big.Rat)
		v.AsBigFloat().Rat(milli)
		milli.Mul(milli, big.NewRat(1000, 1))
	case cty.String:
		text := strings.TrimSpace(v.AsString())
		factor := int64(1000)
		if strings.HasSuffix(text, "m") {
			text, factor = strings.TrimSuffix(text, "m"), 1
		}
		r, good := new(big.Rat).SetString(text)
		if good && len(text) <= maxQuantityLen && !strings.ContainsAny(text, "eE/") {
			milli = r.Mul(r, big.NewRat(factor, 1))
		}
	default:
		d.typeError(attr, "a number of CPUs", `max = "500m"`, v)
		return 0, false
	}
	switch {
	case milli == nil:
		d.errorf(attr.Expr.Range(), "Invalid CPU quantity", "max = %s is refused: not a number of CPUs. Write CPUs as Kubernetes does: 2, 0.5, \"1.5\" or \"500m\".", quoteQuantity(v.AsString()))
		return 0, false
	case milli.Sign() <= 0 || !milli.IsInt() || !milli.Num().IsUint64() || milli.Num().Uint64() > math.MaxInt32:
		d.errorf(attr.Expr.Range(), "Invalid CPU quantity", "max is refused: a CPU limit is a whole number of thousandths of a CPU above 0 (\"1m\" to \"%dm\"), e.g. \"500m\" or 2.", math.MaxInt32)
		return 0, false
	}
	return milli.Num().Uint64(), true
}

var unsupportedBlock = regexp.MustCompile(`^Blocks of type "([^"]*)" are not expected here\.`)

// suggestClosestBlock replaces HCL's suggestion, the first block type within reach,
// with the closest one: "pid" is "pids", not "io".
func (d *decoder) suggestClosestBlock(diags hcl.Diagnostics, schema *hcl.BodySchema) {
	var names []string
	for _, b := range schema.Blocks {
		names = append(names, b.Type)
	}
	for _, diag := range diags {
		m := unsupportedBlock.FindStringSubmatch(diag.Detail)
		if diag.Summary != "Unsupported block type" || m == nil {
			continue
		}
		diag.Detail = m[0] + didYouMean(m[1], names)
	}
}

// classResources is the named class's non-I/O throttles.
func (p *Policy) classResources(name string) Resources {
	if class := p.Classes[name]; class != nil {
		return class.Resources
	}
	return Resources{}
}
