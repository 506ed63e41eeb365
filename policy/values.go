package policy

import (
	"fmt"
	"math"
	"math/big"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// value evaluates an attribute without variables or functions; HCL itself reports
// references and calls.
func (d *decoder) value(attr *hcl.Attribute) (cty.Value, bool) {
	v, diags := attr.Expr.Value(nil)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() {
		return cty.NilVal, false
	}
	if v.IsNull() {
		d.errorf(attr.Expr.Range(), "Null value", "%q is null; remove the line to leave it unset, or give it a value.", attr.Name)
		return cty.NilVal, false
	}
	if !v.IsWhollyKnown() {
		d.errorf(attr.Expr.Range(), "Unknown value", "The value of %q must be a constant.", attr.Name)
		return cty.NilVal, false
	}
	return v, true
}

func (d *decoder) typeError(attr *hcl.Attribute, want, example string, got cty.Value) {
	d.errorf(attr.Expr.Range(), "Incorrect value type",
		"%q must be %s, e.g. %s; this is %s.", attr.Name, want, example, got.Type().FriendlyName())
}

func (d *decoder) stringValue(attr *hcl.Attribute, example string) (string, bool) {
	v, ok := d.value(attr)
	if !ok {
		return "", false
	}
	if v.Type() != cty.String {
		d.typeError(attr, "a string", example, v)
		return "", false
	}
	return v.AsString(), true
}

func (d *decoder) boolValue(attr *hcl.Attribute, example string) (bool, bool) {
	v, ok := d.value(attr)
	if !ok {
		return false, false
	}
	if v.Type() != cty.Bool {
		d.typeError(attr, "true or false", example, v)
		return false, false
	}
	return v.True(), true
}

func (d *decoder) stringListValue(attr *hcl.Attribute, example string) ([]string, bool) {
	v, ok := d.value(attr)
	if !ok {
		return nil, false
	}
	if !v.Type().IsTupleType() && !v.Type().IsListType() && !v.Type().IsSetType() {
		d.typeError(attr, "a list of strings", example, v)
		return nil, false
	}
	list := []string{}
	for it := v.ElementIterator(); it.Next(); {
		_, elem := it.Element()
		if elem.IsNull() || elem.Type() != cty.String {
			d.typeError(attr, "a list of strings", example, elem)
			return nil, false
		}
		if elem.AsString() == "" {
			d.errorf(attr.Expr.Range(), "Empty pattern", "%q contains an empty string, which matches nothing; use \"*\" to match everything.", attr.Name)
			return nil, false
		}
		list = append(list, elem.AsString())
	}
	return list, true
}

func (d *decoder) stringMapValue(attr *hcl.Attribute, example string) (map[string]string, bool) {
	v, ok := d.value(attr)
	if !ok {
		return nil, false
	}
	if !v.Type().IsObjectType() && !v.Type().IsMapType() {
		d.typeError(attr, "a map of strings", example, v)
		return nil, false
	}
	// Label values are strings; an unquoted number or bool is what the operator meant.
	converted, err := convert.Convert(v, cty.Map(cty.String))
	if err != nil {
		d.errorf(attr.Expr.Range(), "Incorrect value type", "%q must be a map of strings, e.g. %s: %s.", attr.Name, example, err)
		return nil, false
	}
	out := map[string]string{}
	for key, elem := range converted.AsValueMap() {
		if elem.IsNull() {
			d.errorf(attr.Expr.Range(), "Incorrect value type", "%q: the value of %q is null; write a string.", attr.Name, key)
			return nil, false
		}
		out[key] = elem.AsString()
	}
	return out, true
}

// The largest limits the kernel holds. One policy serves every node, cgroup v1 and
// v2 alike, so the bounds are the tightest of both.
const (
	// MaxBPS is the largest bytes per second: 2^64-1 is the kernel's "no limit" in
	// io.max and blkio.throttle.*_bps_device (it reads back as nothing).
	MaxBPS uint64 = math.MaxUint64 - 1
	// MaxIOPS is the largest operations per second: cgroup v1 keeps
	// blkio.throttle.*_iops_device in 32 bits, and a larger value wraps to a stricter one.
	MaxIOPS uint64 = math.MaxUint32
	// MaxPids is the kernel's PID_MAX_LIMIT (64-bit): pids.max refuses more.
	MaxPids uint64 = 4 * 1024 * 1024
)

// kernelBound says why n is more than the kernel holds as a bps (isBytes) or IOPS
// limit, or returns "".
func kernelBound(n uint64, isBytes bool) string {
	switch {
	case isBytes && n > MaxBPS:
		return fmt.Sprintf("%d is the kernel's \"no limit\"; a limit is at most %d bytes per second", n, MaxBPS)
	case !isBytes && n > MaxIOPS:
		return fmt.Sprintf("above %d, the most the kernel holds (cgroup v1 keeps IOPS limits in 32 bits, so a larger value would wrap to a stricter one)", MaxIOPS)
	}
	return ""
}

// quantityValue reads a limit: a number, or a string with a unit (bytes) or digits
// (IOPS), no more than the kernel holds.
func (d *decoder) quantityValue(attr *hcl.Attribute, isBytes bool) (uint64, bool) {
	example := attr.Name + ` = "100MiB"`
	if !isBytes {
		example = attr.Name + " = 1000"
	}
	v, ok := d.value(attr)
	if !ok {
		return 0, false
	}
	switch v.Type() {
	case cty.Number:
		n, problem := wholeNumber(v.AsBigFloat())
		if problem == "" {
			problem = kernelBound(n, isBytes)
		}
		if problem != "" {
			d.errorf(attr.Expr.Range(), "Invalid "+quantityKind(isBytes), "%s = %s is refused: %s. %s.",
				attr.Name, v.AsBigFloat().Text('g', 20), problem, quantityHint(isBytes))
			return 0, false
		}
		return n, true
	case cty.String:
		parse := parseCount
		if isBytes {
			parse = parseBytes
		}
		n, problem := parse(v.AsString())
		if problem == "" {
			problem = kernelBound(n, isBytes)
		}
		if problem != "" {
			d.errorf(attr.Expr.Range(), "Invalid "+quantityKind(isBytes), "%s = %s is refused: %s. %s.",
				attr.Name, quoteQuantity(v.AsString()), problem, quantityHint(isBytes))
			return 0, false
		}
		return n, true
	}
	d.typeError(attr, "a number or a string", example, v)
	return 0, false
}

func quantityKind(isBytes bool) string {
	if isBytes {
		return "byte quantity"
	}
	return "operation count"
}

func quantityHint(isBytes bool) string {
	if isBytes {
		return unitHelp
	}
	return "Use a whole number of operations per second, e.g. 1000"
}

// wholeNumber checks an HCL number is a uint64, and says what is wrong otherwise.
func wholeNumber(f *big.Float) (uint64, string) {
	switch {
	case f.IsInf():
		return 0, "infinite"
	case f.Sign() < 0:
		return 0, "negative"
	case !f.IsInt():
		return 0, "not a whole number"
	}
	n, accuracy := f.Uint64()
	if accuracy != big.Exact {
		return 0, fmt.Sprintf("larger than %d", uint64(math.MaxUint64))
	}
	return n, ""
}

// didYouMean suggests the closest name within an edit distance of 2, as HCL does for
// attribute names, formatted to follow a sentence.
func didYouMean(given string, names []string) string {
	best, bestDistance := "", 3
	for _, name := range names {
		if dist := editDistance(given, name); dist < bestDistance {
			best, bestDistance = name, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}

// editDistance is the Levenshtein distance, bounded in input size by the callers
// (names from a policy file).
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
