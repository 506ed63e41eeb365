package policy

import (
	"fmt"
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
)

// Decision is what applies to a workload, and why.
type Decision struct {
	Source  Source
	Rule    string // rule name when Source is SourceRule
	Class   string // class name when a class was chosen
	Scope   Scope
	IO      []IOLimits // empty: no throttle (reset)
	Reason  string     // one sentence for explain and logs
	Ignored []string   // annotations that were ignored or clamped, and why
}

// Decide answers what applies to w. For a container (ContainerName set) the order is:
// its container annotations, the pod's annotations, the first matching rule. A decision
// with Scope pod means the limits belong on the pod's cgroup, not the container's.
//
// For the pod itself (ContainerName empty) only a pod-scope budget can apply: the first
// rule matching the pod, when that rule is pod-scoped, and only if the pod did not
// choose its own limits by annotation (annotations throttle each container).
func (p *Policy) Decide(w Workload) Decision {
	if p == nil {
		return Decision{Source: SourceNone, Scope: ScopeContainer, Reason: "no policy is loaded"}
	}
	var ignored []string
	if w.ContainerName != "" {
		if d, ok := p.fromAnnotations(w, containerLevel, &ignored); ok {
			d.Ignored = ignored
			return d
		}
	}
	if d, ok := p.fromAnnotations(w, podLevel, &ignored); ok {
		if w.ContainerName == "" {
			return Decision{Source: SourceNone, Scope: ScopePod, Ignored: ignored,
				Reason: "the pod's own annotations throttle each container, so the pod has no shared budget"}
		}
		d.Ignored = ignored
		return d
	}
	for _, rule := range p.Rules {
		why, ok := rule.matches(w)
		if !ok {
			continue
		}
		if w.ContainerName == "" && rule.Scope != ScopePod {
			return Decision{Source: SourceNone, Scope: ScopePod, Ignored: ignored,
				Reason: fmt.Sprintf("the first rule matching the pod, %q, is container-scoped, so the pod has no shared budget", rule.Name)}
		}
		return Decision{
			Source:  SourceRule,
			Rule:    rule.Name,
			Class:   rule.Class,
			Scope:   rule.Scope,
			IO:      p.classIO(rule.Class),
			Reason:  fmt.Sprintf("rule %q (%s)", rule.Name, why),
			Ignored: ignored,
		}
	}
	scope := ScopeContainer
	if w.ContainerName == "" {
		scope = ScopePod
	}
	return Decision{Source: SourceNone, Scope: scope, Ignored: ignored, Reason: "no annotation and no rule applies"}
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
		for _, key := range sortedKeys(m.want) {
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
			pattern, ok := firstGlob(r.Images, w.Image)
			if !ok {
				return "", false
			}
			why = append(why, fmt.Sprintf("image %q matches %q", w.Image, pattern))
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
