package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Workload is what a policy matches, built by the caller from CRI metadata.
type Workload struct {
	Namespace      string
	PodName        string
	PodUID         string
	PodLabels      map[string]string
	PodAnnotations map[string]string
	ContainerName  string // empty: the pod itself (pod-scope decisions)
	Image          string
	QoS            string // guaranteed, burstable, besteffort or empty
}

// Source says where a decision came from.
type Source string

const (
	SourceContainerAnnotation Source = "container-annotation"
	SourcePodAnnotation       Source = "pod-annotation"
	SourceRule                Source = "rule"
	SourceNone                Source = "none"
	// SourceRuntime: the pod names a blockio class this policy does not know; that
	// class belongs to the runtime, and criguard leaves the cgroup alone.
	SourceRuntime Source = "runtime"
)

// Decision is what applies to a workload, and why.
type Decision struct {
	Source Source
	Rule   string // rule name when a rule matched
	Class  string // class name when a class was chosen
	Scope  Scope
	IO     []IOLimits // empty: no throttle of criguard's
	// Resources are the container's pids, memory and cpu throttles: the rule's,
	// only ever tightened by an annotation's class.
	Resources Resources
	// HandsOff means criguard must not touch the cgroup's I/O files at all: no policy
	// is loaded, or the throttle is the runtime's own blockio class.
	HandsOff bool
	Reason   string    // one sentence for explain and logs
	Ignored  []Ignored // annotations that did not count, and why: at most MaxIgnoredPerReason of each reason
}

// Decide answers what applies to w. Pod labels and annotations are the tenant's; the
// policy is the operator's. So the first matching rule sets the limits, and an
// annotation (only when annotations are enabled) can only tighten them, key by key and
// device by device, unless allow_loosen lets it replace them up to the max_* bounds.
// Container annotations win over pod annotations.
//
// A decision with Scope pod means the limits belong on the pod's cgroup: one budget
// for the pod. For the pod itself (ContainerName empty) only such a budget applies.
// A pod budget is never split by annotations, allow_loosen or not: pod-level asks
// change the budget (only the keys and disks they name) and container-level asks are
// not allowed.
func (p *Policy) Decide(w Workload) Decision {
	if p == nil {
		return Decision{Source: SourceNone, Scope: ScopeContainer, HandsOff: true,
			Reason: "no policy is loaded: criguard leaves the cgroup files alone"}
	}
	var ignored []Ignored
	a := p.readAsks(w, &ignored)
	d := p.decide(w, a, &ignored)
	d.Ignored = capIgnored(ignored)
	return d
}

func (p *Policy) decide(w Workload, a asks, ignored *[]Ignored) Decision {
	forPod := w.ContainerName == ""
	rule, why := p.firstRule(w)
	podScoped := rule != nil && rule.Scope == ScopePod
	if forPod && !podScoped {
		reason := "no rule gives the pod a shared budget"
		if rule != nil {
			reason = fmt.Sprintf("the first rule matching the pod, %q, is container-scoped, so the pod has no shared budget", rule.Name)
		}
		return Decision{Source: SourceNone, Scope: ScopePod, Reason: reason}
	}
	ruleResources := Resources{}
	if rule != nil {
		ruleResources = p.classResources(rule.Class)
	}
	if podScoped && !forPod {
		// One budget for the pod, the same for each of its containers; only the pod's own
		// annotations may change it (tighten it, or with allow_loosen set its numbers).
		for _, n := range a.numbers {
			if n.level == SourceContainerAnnotation {
				*ignored = append(*ignored, Ignored{Key: n.key, Value: n.value, Reason: IgnoredNotAllowed,
					Detail: fmt.Sprintf("rule %q gives the pod one shared budget; only pod annotations may change it", rule.Name)})
			}
		}
		if a.classLevel == SourceContainerAnnotation {
			*ignored = append(*ignored, Ignored{Key: a.classKey, Value: w.PodAnnotations[a.classKey], Reason: IgnoredNotAllowed,
				Detail: fmt.Sprintf("rule %q gives the pod one shared budget; only pod annotations may change it", rule.Name)})
		}
		a = a.podLevel()
	}

	d := Decision{Source: SourceNone, Scope: ScopeContainer, Reason: "no annotation and no rule applies"}
	if rule != nil {
		d = Decision{Source: SourceRule, Rule: rule.Name, Class: rule.Class, Scope: rule.Scope,
			IO: p.classIO(rule.Class), Reason: fmt.Sprintf("rule %q (%s)", rule.Name, why)}
	}
	d.Resources = ruleResources
	var used []string
	ruleIO := slices.Clone(d.IO)
	if a.class != "" {
		classIO := p.classIO(a.class)
		if p.Annotations.AllowLoosen {
			// The class sets the keys it gives on the disks it names; the rule's other
			// keys and disks stay.
			d.IO = overlay(d.IO, classIO)
		} else {
			// Each disk and key merges to the tightest of rule and class.
			d.IO = append(d.IO, classIO...)
		}
		d.Class, d.Source = a.class, a.classLevel
		// allow_loosen is about I/O numbers: a tenant never loosens these.
		d.Resources = d.Resources.Tighten(p.classResources(a.class))
		used = append(used, a.classKey+"="+quoteValue(w.PodAnnotations[a.classKey]))
		if !p.Annotations.AllowLoosen {
			d.IO = tightestPerDevice(d.IO)
		}
		for _, why := range capWeights(d.IO, ruleIO) {
			*ignored = append(*ignored, Ignored{Key: a.classKey, Value: w.PodAnnotations[a.classKey], Reason: IgnoredLooserThanRule, Detail: why})
		}
	}
	if len(a.numbers) > 0 {
		var numbers []string
		d.IO, numbers = p.applyNumbers(d.IO, a, ignored)
		if len(numbers) > 0 {
			d.Source = a.numbers[slices.Sorted(maps.Keys(a.numbers))[0]].level
			used = append(used, numbers...)
		}
	}
	if !p.Annotations.AllowLoosen {
		d.IO = tightestPerDevice(d.IO)
	}
	var ruleClassIO []IOLimits
	if rule != nil {
		ruleClassIO = p.classIO(rule.Class)
	}
	d.IO = boundSharing(boundBursts(d.IO, ruleClassIO), ruleClassIO)
	if len(used) > 0 {
		verb := "tightened by"
		if p.Annotations.AllowLoosen {
			verb = "set by"
		}
		if rule == nil {
			d.Reason = "annotation " + strings.Join(used, ", ")
		} else {
			d.Reason += "; " + verb + " annotation " + strings.Join(used, ", ")
		}
		return d
	}
	if rule == nil && a.foreignClass != "" {
		return Decision{Source: SourceRuntime, Scope: ScopeContainer, HandsOff: true,
			Reason: fmt.Sprintf("class %q is not in this policy: it is the runtime's blockio class, and criguard leaves the cgroup alone", a.foreignClass)}
	}
	return d
}

// overlay sets, on each disk that over names, the keys over gives (non-zero), keeping
// every other key and disk of base.
func overlay(base, over []IOLimits) []IOLimits {
	out := slices.Clone(base)
	for _, l := range over {
		i := slices.IndexFunc(out, func(o IOLimits) bool { return o.Target() == l.Target() })
		if i < 0 {
			out = append(out, l)
			continue
		}
		o := &out[i]
		for _, k := range numericKeys {
			if v := *k.field(&l); v != 0 {
				*k.field(o) = v
			}
		}
		if !l.Burst.IsZero() {
			// A class's burst only narrows the one in place (boundBursts).
			o.Burst = tightestBurst(*o, l)
		}
		// A class never takes a yield away (boundSharing).
		o.Yield = tightestYield(o.Yield, l.Yield)
	}
	return out
}

// tightestPerDevice folds entries naming the same device into one, keeping the
// tightest value of each key (0 is no limit).
func tightestPerDevice(io []IOLimits) []IOLimits {
	var out []IOLimits
	for _, l := range io {
		i := slices.IndexFunc(out, func(o IOLimits) bool { return o.Target() == l.Target() })
		if i < 0 {
			out = append(out, l)
			continue
		}
		o := &out[i]
		o.ReadBPS, o.WriteBPS = tightest(o.ReadBPS, l.ReadBPS), tightest(o.WriteBPS, l.WriteBPS)
		o.ReadIOPS, o.WriteIOPS = tightest(o.ReadIOPS, l.ReadIOPS), tightest(o.WriteIOPS, l.WriteIOPS)
		o.Burst = tightestBurst(*o, l)
		// The lower weight: a share given to neighbours is the safe side.
		o.Weight = tightest(o.Weight, l.Weight)
		o.Yield = tightestYield(o.Yield, l.Yield)
		if l.Protect.PressureSomeAvg10 > o.Protect.PressureSomeAvg10 {
			o.Protect = l.Protect // the looser target asks less of the neighbours; boundSharing has the last word
		}
	}
	return out
}

// tightest is the stricter of two limits, where 0 means none.
func tightest(a, b uint64) uint64 {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// podLevel keeps only what the pod's own annotations ask.
func (a asks) podLevel() asks {
	if a.podOnly == nil {
		return a
	}
	return *a.podOnly
}

func (p *Policy) firstRule(w Workload) (*Rule, string) {
	for _, rule := range p.Rules {
		if why, ok := rule.matches(w); ok {
			return rule, why
		}
	}
	return nil, ""
}

func (p *Policy) classIO(name string) []IOLimits {
	class := p.Classes[name]
	if class == nil {
		return nil
	}
	return slices.Clone(class.IO)
}

// matches reports whether every condition of the rule holds, and says which ones did.
func (r *Rule) matches(w Workload) (string, bool) {
	var why []string
	if len(r.Namespaces) > 0 {
		pattern, ok := firstGlob(r.Namespaces, w.Namespace)
		if !ok {
			return "", false
		}
		why = append(why, fmt.Sprintf("namespace %q matches %q", w.Namespace, pattern))
	}
	for _, m := range []struct {
		kind  string
		want  map[string]string
		given map[string]string
	}{{"label", r.PodLabels, w.PodLabels}, {"annotation", r.PodAnnotations, w.PodAnnotations}} {
		for _, key := range slices.Sorted(maps.Keys(m.want)) {
			value, present := m.given[key]
			if !present || !glob(m.want[key], value) {
				return "", false
			}
			why = append(why, fmt.Sprintf("pod %s %s=%q", m.kind, key, value))
		}
	}
	if len(r.QoS) > 0 {
		qos := strings.ToLower(w.QoS)
		if !slices.Contains(r.QoS, qos) {
			return "", false
		}
		why = append(why, fmt.Sprintf("QoS %s", qos))
	}
	// Container conditions say nothing about the pod itself; pod-scope rules have none.
	if w.ContainerName != "" {
		if len(r.Containers) > 0 {
			pattern, ok := firstGlob(r.Containers, w.ContainerName)
			if !ok {
				return "", false
			}
			why = append(why, fmt.Sprintf("container %q matches %q", w.ContainerName, pattern))
		}
		if len(r.Images) > 0 {
			pattern, form, ok := matchImage(r.Images, w.Image)
			if !ok {
				return "", false
			}
			if form == w.Image {
				why = append(why, fmt.Sprintf("image %q matches %q", w.Image, pattern))
			} else {
				why = append(why, fmt.Sprintf("image %q (%s) matches %q", w.Image, form, pattern))
			}
		}
	} else if len(r.Containers) > 0 || len(r.Images) > 0 {
		return "", false
	}
	if len(why) == 0 {
		return "it matches every workload", true
	}
	return strings.Join(why, ", "), true
}

func (r *Rule) matchesEverything() bool {
	return len(r.Namespaces) == 0 && len(r.PodLabels) == 0 && len(r.PodAnnotations) == 0 &&
		len(r.QoS) == 0 && len(r.Containers) == 0 && len(r.Images) == 0
}

func firstGlob(patterns []string, s string) (string, bool) {
	for _, p := range patterns {
		if glob(p, s) {
			return p, true
		}
	}
	return "", false
}

// glob matches s against a pattern where * is any run of characters (slashes included,
// so "registry.example.com/*" matches every image there) and ? is one character.
func glob(pattern, s string) bool {
	// Iterative matching with backtracking to the last star: linear in practice,
	// never exponential.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
