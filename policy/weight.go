package policy

import (
	"fmt"
	"slices"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// A weight is a proportional share of one disk, not a cap: it only counts while the
// cgroup's siblings (the other children of its parent) compete for that disk, and
// only where the disk's scheduler honours it (BFQ, or cgroup v2 io.cost). The policy
// writes it in cgroup v2 io.weight units, as systemd's IOWeight= does; the cgroup
// package maps it to each file's own range (io.bfq.weight, v1 blkio weights).
const (
	// MinWeight and MaxWeight bound cgroup v2 io.weight (and systemd's IOWeight=).
	MinWeight uint64 = 1
	MaxWeight uint64 = 10000
	// DefaultWeight is what every cgroup has when no one set a weight: the ceiling of
	// what a tenant's annotation may ask where the rule gives no weight.
	DefaultWeight uint64 = 100
)

// AnnotationIOWeight asks for a weight on the annotation device. It can only lower
// the weight the rule gives (or the default), never raise it, allow_loosen or not:
// a higher weight takes disk time from the pod's neighbours.
const AnnotationIOWeight = "criguard.io/io-weight"

// weightValue reads an io block's weight: a whole number in MinWeight–MaxWeight, on
// a device named by the operator (a selector resolves per container and would give
// the same weight to every disk the container touches, which no sibling set shares).
func (d *decoder) weightValue(attr *hcl.Attribute, limits IOLimits) (uint64, bool) {
	v, ok := d.value(attr)
	if !ok {
		return 0, false
	}
	if v.Type() != cty.Number {
		d.typeError(attr, "a whole number", "weight = 200", v)
		return 0, false
	}
	n, problem := wholeNumber(v.AsBigFloat())
	if problem == "" && (n < MinWeight || n > MaxWeight) {
		problem = fmt.Sprintf("outside %d–%d, the range of cgroup v2 io.weight and systemd's IOWeight=", MinWeight, MaxWeight)
	}
	if problem != "" {
		d.errorf(attr.Expr.Range(), "Invalid weight",
			"weight = %s is refused: %s. Use a whole number from %d to %d; %d is the kernel's default, so 200 gets twice the disk time of a default sibling.",
			v.AsBigFloat().Text('g', 20), problem, MinWeight, MaxWeight, DefaultWeight)
		return 0, false
	}
	if limits.SelectsMounts() {
		d.errorf(attr.NameRange, "Weight on a device selector",
			"A weight is set per disk, and %q resolves to different disks per container. Put the weight in an io block naming the device (a label, a path or MAJ:MIN).", limits.Target())
		return 0, false
	}
	return n, true
}

// capWeights keeps every weight of io at or below what the rule alone gives on that
// device (bound; DefaultWeight where it gives none): a class picked by annotation may
// lower a weight, never raise it. It returns a sentence per weight it lowered.
func capWeights(io []IOLimits, bound []IOLimits) []string {
	var capped []string
	for i := range io {
		l := &io[i]
		if l.Weight == 0 {
			continue
		}
		limit, from := DefaultWeight, "the default weight, as the rule sets none there"
		if j := slices.IndexFunc(bound, func(b IOLimits) bool { return b.Target() == l.Target() && b.Weight != 0 }); j >= 0 {
			limit, from = bound[j].Weight, "the rule's weight"
		}
		if l.Weight > limit {
			capped = append(capped, fmt.Sprintf("weight %d on %s lowered to %d, %s: an annotation never raises a weight", l.Weight, l.Target(), limit, from))
			l.Weight = limit
		}
	}
	return capped
}

// HasWeights reports whether any block of the decision sets a weight.
func (d Decision) HasWeights() bool {
	return slices.ContainsFunc(d.IO, func(l IOLimits) bool { return l.Weight != 0 })
}
