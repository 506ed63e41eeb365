package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Annotation keys. The blockio keys are the ones containerd and CRI-O already use to
// pick a class; the criguard.io keys ask for numbers, per pod or (with a ".<container>"
// suffix) per container.
const (
	AnnotationPodClass       = "blockio.resources.beta.kubernetes.io/pod"
	AnnotationContainerClass = "blockio.resources.beta.kubernetes.io/container." // + container name
	AnnotationReadBPS        = "criguard.io/read-bps"
	AnnotationWriteBPS       = "criguard.io/write-bps"
	AnnotationReadIOPS       = "criguard.io/read-iops"
	AnnotationWriteIOPS      = "criguard.io/write-iops"
)

// maxAnnotationValue bounds the annotation text accepted and quoted back; Kubernetes
// allows 256 KiB of annotations, which must not end up in a log line.
const maxAnnotationValue = 64

// IgnoredReason says why an annotation did not count; it is a metric label.
type IgnoredReason string

const (
	// IgnoredInvalid: not a number, zero, negative, overflowing, too long, or not a
	// criguard.io key at all.
	IgnoredInvalid IgnoredReason = "invalid"
	// IgnoredAboveMax: more than the annotations block's max_* for that key.
	IgnoredAboveMax IgnoredReason = "above_max"
	// IgnoredLooserThanRule: would loosen what the rule gives, and allow_loosen is off.
	IgnoredLooserThanRule IgnoredReason = "looser_than_rule"
	// IgnoredNotAllowed: annotations are off, or the class is not in annotations.classes.
	IgnoredNotAllowed IgnoredReason = "not_allowed"
)

// Ignored is one annotation that did not count, and why.
type Ignored struct {
	Key    string        `json:"key"`
	Value  string        `json:"value"`
	Reason IgnoredReason `json:"reason"`
	Detail string        `json:"detail"`
	// More counts the annotations ignored for the same reason beyond this one and not
	// listed: a Decision keeps MaxIgnoredPerReason of each reason, whatever a tenant
	// writes. Ignored annotations of a reason in all: the listed ones plus their More.
	More int `json:"more,omitempty"`
}

// MaxIgnoredPerReason bounds the Ignored entries a Decision keeps of one reason, so
// that a pod's 256 KiB of junk criguard.io/* keys costs a few log lines, not 14,000:
// enough for the four numbers a pod and its container may ask, plus a few typos.
const MaxIgnoredPerReason = 8

func (i Ignored) String() string {
	s := fmt.Sprintf("annotation %s=%s ignored (%s): %s", truncate(i.Key), quoteValue(i.Value), i.Reason, i.Detail)
	if i.More > 0 {
		s += fmt.Sprintf(" (and %d more ignored as %s, not listed)", i.More, i.Reason)
	}
	return s
}

// capIgnored keeps the first MaxIgnoredPerReason entries of each reason, in order,
// and counts the rest in the More of the last one kept.
func capIgnored(ignored []Ignored) []Ignored {
	kept := ignored[:0:0]
	last := map[IgnoredReason]int{} // reason → index in kept of its last entry
	count := map[IgnoredReason]int{}
	for _, ig := range ignored {
		count[ig.Reason]++
		if count[ig.Reason] <= MaxIgnoredPerReason {
			last[ig.Reason] = len(kept)
			kept = append(kept, ig)
			continue
		}
		kept[last[ig.Reason]].More += 1 + ig.More
	}
	return kept
}

// numericKey is one criguard.io number annotation and the bound that limits it.
type numericKey struct {
	key     string
	setting string
	isBytes bool
	// weight: a proportional share, never raised by a tenant (see applyNumbers).
	weight bool
	max    func(AnnotationSettings) uint64
	field  func(*IOLimits) *uint64
}

var numericKeys = []numericKey{
	{AnnotationReadBPS, "max_read_bps", true, false,
		func(s AnnotationSettings) uint64 { return s.MaxReadBPS }, func(l *IOLimits) *uint64 { return &l.ReadBPS }},
	{AnnotationWriteBPS, "max_write_bps", true, false,
		func(s AnnotationSettings) uint64 { return s.MaxWriteBPS }, func(l *IOLimits) *uint64 { return &l.WriteBPS }},
	{AnnotationReadIOPS, "max_read_iops", false, false,
		func(s AnnotationSettings) uint64 { return s.MaxReadIOPS }, func(l *IOLimits) *uint64 { return &l.ReadIOPS }},
	{AnnotationWriteIOPS, "max_write_iops", false, false,
		func(s AnnotationSettings) uint64 { return s.MaxWriteIOPS }, func(l *IOLimits) *uint64 { return &l.WriteIOPS }},
	{AnnotationIOWeight, "", false, true,
		func(AnnotationSettings) uint64 { return 0 }, func(l *IOLimits) *uint64 { return &l.Weight }},
}

// asks is what a workload's annotations validly ask for, container level over pod level.
type asks struct {
	class      string // a class of this policy, allowed by annotations.classes
	classKey   string
	classLevel Source
	// foreignClass is a class name this policy does not know: a runtime's blockio
	// class (containerd, CRI-O), left to the runtime.
	foreignClass string
	numbers      map[int]askedNumber // index in numericKeys
	// podOnly is what the pod-level keys alone ask, for a budget the pod shares.
	podOnly *asks
}

type askedNumber struct {
	key   string
	value string
	n     uint64
	level Source
}

// readAsks validates every annotation the workload carries. For the pod itself only
// pod-level keys count; for a container its own keys win over the pod's.
func (p *Policy) readAsks(w Workload, ignored *[]Ignored) asks {
	a := asks{numbers: map[int]askedNumber{}}
	levels := []struct {
		source Source
		class  string
		suffix string
	}{{SourcePodAnnotation, AnnotationPodClass, ""}}
	if w.ContainerName != "" {
		// Later levels override earlier ones.
		levels = append(levels, struct {
			source Source
			class  string
			suffix string
		}{SourceContainerAnnotation, AnnotationContainerClass + w.ContainerName, "." + w.ContainerName})
	}
	for _, level := range levels {
		if level.source == SourceContainerAnnotation {
			podOnly := a
			podOnly.numbers = maps.Clone(a.numbers)
			a.podOnly = &podOnly
		}
		if value, ok := w.PodAnnotations[level.class]; ok {
			name, known, ig := p.annotationClass(level.class, value)
			switch {
			case ig != nil:
				*ignored = append(*ignored, *ig)
			case !known:
				a.foreignClass = name
			default:
				a.class, a.classKey, a.classLevel = name, level.class, level.source
			}
		}
		for i, k := range numericKeys {
			key := k.key + level.suffix
			value, ok := w.PodAnnotations[key]
			if !ok {
				continue
			}
			n, ig := p.annotationNumber(k, key, value)
			if ig != nil {
				*ignored = append(*ignored, *ig)
				continue
			}
			a.numbers[i] = askedNumber{key: key, value: value, n: n, level: level.source}
		}
	}
	*ignored = append(*ignored, unknownCriguardKeys(w.PodAnnotations)...)
	return a
}

// annotationClass checks a class annotation. known is false for a class this policy
// does not declare: that name belongs to the runtime's own blockio classes.
func (p *Policy) annotationClass(key, value string) (name string, known bool, ig *Ignored) {
	name = strings.TrimSpace(value)
	if len(name) > maxAnnotationValue {
		return "", false, &Ignored{Key: key, Value: value, Reason: IgnoredInvalid, Detail: "not a class name"}
	}
	if _, ok := p.Classes[name]; !ok {
		return name, false, nil
	}
	if !p.Annotations.Enabled {
		return "", true, &Ignored{Key: key, Value: value, Reason: IgnoredNotAllowed,
			Detail: "annotations are disabled (annotations { enabled = true })"}
	}
	if !slices.Contains(p.Annotations.Classes, name) {
		return "", true, &Ignored{Key: key, Value: value, Reason: IgnoredNotAllowed,
			Detail: fmt.Sprintf("class %q may not be picked by annotation (annotations.classes)", name)}
	}
	return name, true, nil
}

func (p *Policy) annotationNumber(k numericKey, key, value string) (uint64, *Ignored) {
	if !p.Annotations.Enabled {
		return 0, &Ignored{Key: key, Value: value, Reason: IgnoredNotAllowed,
			Detail: "annotations are disabled (annotations { enabled = true })"}
	}
	if p.Annotations.Device == "" {
		return 0, &Ignored{Key: key, Value: value, Reason: IgnoredNotAllowed,
			Detail: "the policy names no device for annotations"}
	}
	parse, what := ParseCount, "a whole number of operations per second above 0"
	if k.isBytes {
		parse, what = ParseBytes, "a byte quantity above 0 such as 100MiB"
	}
	if k.weight {
		what = fmt.Sprintf("a whole weight from %d to %d", MinWeight, MaxWeight)
	}
	if len(value) > maxAnnotationValue {
		return 0, &Ignored{Key: key, Value: value, Reason: IgnoredInvalid, Detail: "longer than any " + what}
	}
	n, err := parse(value)
	if err != nil || n == 0 {
		// 0 would read as "no limit": it is never a way to lift one.
		return 0, &Ignored{Key: key, Value: value, Reason: IgnoredInvalid, Detail: "not " + what}
	}
	if k.weight && n > MaxWeight {
		return 0, &Ignored{Key: key, Value: value, Reason: IgnoredInvalid, Detail: "not " + what}
	}
	if problem := kernelBound(n, k.isBytes); problem != "" {
		return 0, &Ignored{Key: key, Value: value, Reason: IgnoredInvalid, Detail: problem}
	}
	if limit := k.max(p.Annotations); limit != 0 && n > limit {
		return 0, &Ignored{Key: key, Value: value, Reason: IgnoredAboveMax,
			Detail: fmt.Sprintf("above annotations.%s = %s", k.setting, formatQuantity(limit, k.isBytes))}
	}
	return n, nil
}

// applyNumbers lays the asked numbers over io on the annotation device. Without
// allow_loosen an ask looser than what io already gives there is ignored. A rule that
// names the same disk another way still wins where it is tighter: the caller merges
// entries per disk by the tightest value of each key.
func (p *Policy) applyNumbers(io []IOLimits, a asks, ignored *[]Ignored) ([]IOLimits, []string) {
	device := p.Annotations.Device
	var used []string
	idx := slices.IndexFunc(io, func(l IOLimits) bool { return l.Device == device })
	for _, i := range slices.Sorted(maps.Keys(a.numbers)) {
		k, asked := numericKeys[i], a.numbers[i]
		if k.weight {
			// allow_loosen is about caps: a weight is only ever lowered, below what the
			// rule gives there or, where it gives none, the default every cgroup has.
			bound := DefaultWeight
			if idx >= 0 && io[idx].Weight != 0 {
				bound = io[idx].Weight
			}
			if asked.n > bound {
				*ignored = append(*ignored, Ignored{Key: asked.key, Value: asked.value, Reason: IgnoredLooserThanRule,
					Detail: fmt.Sprintf("above weight %d, which this pod already gets: an annotation may only lower a weight", bound)})
				continue
			}
		}
		if p.Annotations.AllowLoosen && idx >= 0 {
			*k.field(&io[idx]) = asked.n
			used = append(used, asked.key+"="+quoteValue(asked.value))
			continue
		}
		if idx >= 0 {
			if current := *k.field(&io[idx]); current != 0 && asked.n > current {
				*ignored = append(*ignored, Ignored{Key: asked.key, Value: asked.value, Reason: IgnoredLooserThanRule,
					Detail: fmt.Sprintf("looser than %s, which this pod already gets (annotations.allow_loosen is off)", formatQuantity(current, k.isBytes))})
				continue
			}
		}
		if idx < 0 {
			io = append(io, IOLimits{Device: device})
			idx = len(io) - 1
		}
		// In place: the value is no looser than what was there.
		*k.field(&io[idx]) = asked.n
		used = append(used, asked.key+"="+quoteValue(asked.value))
	}
	return io, used
}

// unknownCriguardKeys lists criguard.io annotations that are not ours, likely typos:
// the first MaxIgnoredPerReason in key order, the last one counting the others in
// More. Its cost is one pass over the keys, however many a tenant writes.
func unknownCriguardKeys(annotations map[string]string) []Ignored {
	var known []string
	for _, k := range numericKeys {
		known = append(known, k.key)
	}
	var first []string // the smallest unknown keys, sorted
	total := 0
	for key := range annotations {
		if !strings.HasPrefix(key, "criguard.io/") {
			continue
		}
		if slices.Contains(known, key) || slices.ContainsFunc(known, func(k string) bool { return strings.HasPrefix(key, k+".") }) {
			continue
		}
		total++
		i, _ := slices.BinarySearch(first, key)
		if i < MaxIgnoredPerReason {
			first = slices.Insert(first, i, key)
			first = first[:min(len(first), MaxIgnoredPerReason)]
		}
	}
	out := make([]Ignored, 0, len(first))
	for _, key := range first {
		name, _, _ := strings.Cut(strings.TrimPrefix(key, "criguard.io/"), ".")
		out = append(out, Ignored{Key: key, Value: annotations[key], Reason: IgnoredInvalid,
			Detail: "not a criguard.io annotation." + didYouMean(truncate("criguard.io/"+name), known)})
	}
	if len(out) > 0 {
		out[len(out)-1].More = total - len(out)
	}
	return out
}

func truncate(s string) string {
	if len(s) > maxAnnotationValue {
		return s[:maxAnnotationValue] + "…"
	}
	return s
}

func quoteValue(value string) string {
	if len(value) > maxAnnotationValue {
		return fmt.Sprintf("%q…(%d bytes)", value[:maxAnnotationValue], len(value))
	}
	return fmt.Sprintf("%q", value)
}

func formatQuantity(n uint64, isBytes bool) string {
	if isBytes {
		return FormatBytes(n)
	}
	return fmt.Sprint(n)
}
