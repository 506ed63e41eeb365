package policy

import (
	"fmt"
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

// maxAnnotationValue bounds the annotation text quoted back in Ignored; Kubernetes
// allows 256 KiB of annotations, which must not end up in a log line.
const maxAnnotationValue = 64

type annotationLevel int

const (
	podLevel annotationLevel = iota
	containerLevel
)

// numericKey is one criguard.io number annotation and the bound that clamps it.
type numericKey struct {
	key     string
	setting string
	isBytes bool
	max     func(AnnotationSettings) uint64
	field   func(*IOLimits) *uint64
}

var numericKeys = []numericKey{
	{AnnotationReadBPS, "max_read_bps", true,
		func(s AnnotationSettings) uint64 { return s.MaxReadBPS }, func(l *IOLimits) *uint64 { return &l.ReadBPS }},
	{AnnotationWriteBPS, "max_write_bps", true,
		func(s AnnotationSettings) uint64 { return s.MaxWriteBPS }, func(l *IOLimits) *uint64 { return &l.WriteBPS }},
	{AnnotationReadIOPS, "max_read_iops", false,
		func(s AnnotationSettings) uint64 { return s.MaxReadIOPS }, func(l *IOLimits) *uint64 { return &l.ReadIOPS }},
	{AnnotationWriteIOPS, "max_write_iops", false,
		func(s AnnotationSettings) uint64 { return s.MaxWriteIOPS }, func(l *IOLimits) *uint64 { return &l.WriteIOPS }},
}

// fromAnnotations builds the decision one level of annotations asks for. A class
// annotation gives the base; numbers override its limits on the annotation device. A
// number that is not asked for gets the configured maximum, so that asking for one
// limit never lifts the others. Anything invalid is skipped and noted in ignored.
func (p *Policy) fromAnnotations(w Workload, level annotationLevel, ignored *[]string) (Decision, bool) {
	classKey, suffix, where := AnnotationPodClass, "", "pod"
	if level == containerLevel {
		classKey, suffix, where = AnnotationContainerClass+w.ContainerName, "."+w.ContainerName, "container"
	}
	var reasons []string
	decision := Decision{Source: SourcePodAnnotation, Scope: ScopeContainer}
	if level == containerLevel {
		decision.Source = SourceContainerAnnotation
	}

	if value, ok := w.PodAnnotations[classKey]; ok {
		if class, problem := p.annotationClass(value); problem != "" {
			*ignored = append(*ignored, fmt.Sprintf("annotation %s=%s ignored: %s", classKey, quoteValue(value), problem))
		} else {
			decision.Class = class
			decision.IO = p.classIO(class)
			reasons = append(reasons, fmt.Sprintf("%s=%s", classKey, quoteValue(value)))
		}
	}

	asked := map[int]uint64{} // index in numericKeys → value, clamped
	for i, k := range numericKeys {
		key := k.key + suffix
		value, present := w.PodAnnotations[key]
		if !present {
			continue
		}
		n, problem := p.annotationNumber(k, value)
		if problem != "" {
			*ignored = append(*ignored, fmt.Sprintf("annotation %s=%s ignored: %s", key, quoteValue(value), problem))
			continue
		}
		if limit := k.max(p.Annotations); limit != 0 && (n == 0 || n > limit) {
			*ignored = append(*ignored, fmt.Sprintf("annotation %s=%s clamped to %s (annotations.%s)",
				key, quoteValue(value), formatQuantity(limit, k.isBytes), k.setting))
			n = limit
		}
		asked[i] = n
		reasons = append(reasons, fmt.Sprintf("%s=%s", key, quoteValue(value)))
	}
	if level == podLevel {
		*ignored = append(*ignored, unknownCriguardKeys(w.PodAnnotations)...)
	}
	if decision.Class == "" && len(asked) == 0 {
		return Decision{}, false
	}
	if len(asked) > 0 {
		decision.IO = p.mergeAsked(decision.IO, asked)
	}
	decision.Reason = fmt.Sprintf("%s annotation %s", where, strings.Join(reasons, ", "))
	return decision, true
}

// mergeAsked lays the asked numbers over the class entry for the annotation device (or
// the maxima when there is none), keeping the class's value for a number not asked.
func (p *Policy) mergeAsked(io []IOLimits, asked map[int]uint64) []IOLimits {
	device := p.Annotations.Device
	index := slices.IndexFunc(io, func(l IOLimits) bool { return l.Device == device })
	base := IOLimits{Device: device}
	if index >= 0 {
		base = io[index]
	} else {
		for _, k := range numericKeys {
			*k.field(&base) = k.max(p.Annotations)
		}
	}
	for i, n := range asked {
		*numericKeys[i].field(&base) = n
	}
	if index >= 0 {
		io[index] = base
	} else if !base.IsZero() {
		io = append(io, base)
	}
	return io
}

func (p *Policy) annotationClass(value string) (string, string) {
	name := strings.TrimSpace(value)
	if len(name) > maxAnnotationValue {
		return "", "not a class name"
	}
	if _, ok := p.Classes[name]; !ok {
		return "", fmt.Sprintf("no class %q in %s.%s", name, p.Filename, didYouMean(name, sortedKeys(p.Classes)))
	}
	if p.Annotations.Classes != nil && !slices.Contains(p.Annotations.Classes, name) {
		return "", fmt.Sprintf("class %q may not be picked by annotation (annotations.classes)", name)
	}
	return name, ""
}

func (p *Policy) annotationNumber(k numericKey, value string) (uint64, string) {
	if !p.Annotations.Enabled {
		return 0, "numeric annotations are disabled (annotations { enabled = true })"
	}
	if p.Annotations.Device == "" {
		return 0, "the policy names no device for annotations"
	}
	parse := ParseCount
	if k.isBytes {
		parse = ParseBytes
	}
	n, err := parse(value)
	if err != nil {
		if k.isBytes {
			return 0, "not a byte quantity such as 100MiB"
		}
		return 0, "not a whole number of operations per second"
	}
	return n, ""
}

// unknownCriguardKeys lists criguard.io annotations that are not ours, likely typos.
func unknownCriguardKeys(annotations map[string]string) []string {
	var known []string
	for _, k := range numericKeys {
		known = append(known, k.key)
	}
	var out []string
	for _, key := range sortedKeys(annotations) {
		if !strings.HasPrefix(key, "criguard.io/") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(key, "criguard.io/"), ".")
		base := "criguard.io/" + name
		if len(base) > maxAnnotationValue {
			base = base[:maxAnnotationValue]
		}
		if slices.Contains(known, key) || slices.ContainsFunc(known, func(k string) bool { return strings.HasPrefix(key, k+".") }) {
			continue
		}
		if len(key) > maxAnnotationValue {
			key = key[:maxAnnotationValue] + "…"
		}
		out = append(out, fmt.Sprintf("annotation %s ignored: not a criguard.io annotation.%s", key, didYouMean(base, known)))
	}
	return out
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
