package policy

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Schemas, attributes in the order suggestions are tried.
var (
	fileSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "device", LabelNames: []string{"name"}},
		{Type: "class", LabelNames: []string{"name"}},
		{Type: "rule", LabelNames: []string{"name"}},
		{Type: "annotations"},
	}}
	deviceSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "path", Required: true}}}
	classSchema  = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "io"}, {Type: "pids"}, {Type: "memory"}, {Type: "cpu"}}}
	ioSchema     = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "device"}, {Name: "volumes"},
			{Name: "read_bps"}, {Name: "write_bps"}, {Name: "read_iops"}, {Name: "write_iops"},
			{Name: "weight"},
		},
		Blocks: []hcl.BlockHeaderSchema{{Type: "burst"}, {Type: "protect"}, {Type: "yield"}},
	}
	ruleSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "class", Required: true}, {Name: "scope"}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "match"}},
	}
	matchSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "namespaces"}, {Name: "pod_labels"}, {Name: "pod_annotations"},
		{Name: "qos"}, {Name: "containers"}, {Name: "images"},
	}}
	annotationsSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "enabled"}, {Name: "allow_loosen"}, {Name: "device"}, {Name: "classes"},
		{Name: "max_read_bps"}, {Name: "max_write_bps"}, {Name: "max_read_iops"}, {Name: "max_write_iops"},
	}}
)

var (
	majMinPattern = regexp.MustCompile(`^[0-9]{1,10}:[0-9]{1,10}$`)
	qosValues     = []string{"guaranteed", "burstable", "besteffort"}
	scopeValues   = []string{string(ScopeContainer), string(ScopePod)}
)

// decoder accumulates diagnostics while it fills the policy, so that one run reports
// every problem.
type decoder struct {
	policy       *Policy
	diags        hcl.Diagnostics
	deviceOrder  []string
	deviceRanges map[string]hcl.Range
	classRanges  map[string]hcl.Range
	ruleRanges   map[string]hcl.Range
}

func (d *decoder) errorf(subject hcl.Range, summary, detailFormat string, args ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(detailFormat, args...),
		Subject:  subject.Ptr(),
	})
}

func (d *decoder) content(body hcl.Body, schema *hcl.BodySchema) *hcl.BodyContent {
	content, diags := body.Content(schema)
	d.diags = append(d.diags, diags...)
	return content
}

// decodeFile visits blocks by kind so that references resolve whatever the file order:
// devices, then classes, then rules and annotations.
func (d *decoder) decodeFile(body hcl.Body) {
	content := d.content(body, fileSchema)
	blocks := content.Blocks.ByType()
	for _, b := range blocks["device"] {
		d.decodeDevice(b)
	}
	for _, b := range blocks["class"] {
		d.decodeClass(b)
	}
	for _, b := range blocks["rule"] {
		d.decodeRule(b)
	}
	d.warnUnreachableRules()
	for i, b := range blocks["annotations"] {
		if i > 0 {
			d.errorf(b.DefRange, "Duplicate annotations block",
				"A policy has at most one annotations block; the first is at %s. Merge the two.", rangeLine(blocks["annotations"][0].DefRange))
			continue
		}
		d.decodeAnnotations(b)
	}
	if d.policy.Annotations.Device == "" && len(d.deviceOrder) > 0 {
		d.policy.Annotations.Device = d.policy.Devices[d.deviceOrder[0]]
	}
}

// declare records a block name, refusing empty and duplicate ones.
func (d *decoder) declare(kind string, b *hcl.Block, seen map[string]hcl.Range) (string, bool) {
	name, labelRange := b.Labels[0], b.LabelRanges[0]
	if strings.TrimSpace(name) == "" {
		d.errorf(labelRange, "Empty "+kind+" name", "Give the %s a name, e.g. %s %q.", kind, kind, exampleName(kind))
		return "", false
	}
	if first, dup := seen[name]; dup {
		d.errorf(labelRange, "Duplicate "+kind+" name",
			"A %s named %q is already declared at %s; each %s needs its own name.", kind, name, rangeLine(first), kind)
		return "", false
	}
	seen[name] = labelRange
	return name, true
}

func exampleName(kind string) string {
	switch kind {
	case "device":
		return "data"
	case "class":
		return "bulk"
	}
	return "batch"
}

func (d *decoder) decodeDevice(b *hcl.Block) {
	content := d.content(b.Body, deviceSchema)
	name, ok := d.declare("device", b, d.deviceRanges)
	if ok && (strings.HasPrefix(name, "/") || majMinPattern.MatchString(name)) {
		// io blocks look labels up first: such a label would hide the real device.
		d.errorf(b.LabelRanges[0], "Device label looks like a device",
			"The label %q reads like a path or MAJ:MIN, so io blocks naming it would be ambiguous; give it a name such as \"data\" and put the device in path.", name)
		ok = false
	}
	ok = ok && d.checkDeviceLabel(b, name)
	attr := content.Attributes["path"]
	if attr == nil {
		return
	}
	path, set := d.stringValue(attr, `path = "/var/lib/containerd"`)
	if !set {
		return
	}
	if !d.checkDeviceSpec(attr, path) || !ok {
		return
	}
	d.policy.Devices[name] = path
	d.deviceOrder = append(d.deviceOrder, name)
}

// checkDeviceSpec accepts an absolute path or MAJ:MIN.
func (d *decoder) checkDeviceSpec(attr *hcl.Attribute, spec string) bool {
	if strings.HasPrefix(spec, "/") || majMinPattern.MatchString(spec) {
		return true
	}
	d.errorf(attr.Expr.Range(), "Invalid device path",
		"%q is neither an absolute path nor MAJ:MIN. Write a block device (\"/dev/sda\"), a directory on its filesystem (\"/var/lib/containerd\") or its numbers (\"8:0\").", spec)
	return false
}

// resolveDevice turns an io device reference (label, path or MAJ:MIN) into a path or MAJ:MIN.
func (d *decoder) resolveDevice(attr *hcl.Attribute) (string, bool) {
	ref, set := d.stringValue(attr, `device = "data"`)
	if !set {
		return "", false
	}
	if path, ok := d.policy.Devices[ref]; ok {
		return path, true
	}
	if strings.HasPrefix(ref, "/") || majMinPattern.MatchString(ref) {
		return ref, true
	}
	if _, declared := d.deviceRanges[ref]; declared {
		return "", false // the device block itself is wrong and already reported
	}
	d.errorf(attr.Expr.Range(), "Unknown device",
		"No device is labelled %q.%s Use a declared label (%s), an absolute path or MAJ:MIN.",
		ref, didYouMean(ref, d.deviceOrder), listOrNone(d.deviceOrder))
	return "", false
}

func (d *decoder) decodeClass(b *hcl.Block) {
	before := len(d.diags)
	content := d.content(b.Body, classSchema)
	d.suggestClosestBlock(d.diags[before:], classSchema)
	name, ok := d.declare("class", b, d.classRanges)
	class := &Class{Name: name}
	seenDevices := map[string]hcl.Range{}
	valid := ok
	blocks := content.Blocks.ByType()
	valid = d.decodeResources(name, blocks, &class.Resources) && valid
	for _, ioBlock := range blocks["io"] {
		limits, good := d.decodeIO(ioBlock)
		if !good {
			valid = false
			continue
		}
		if first, dup := seenDevices[limits.Target()]; dup {
			d.errorf(ioBlock.DefRange, "Duplicate io device",
				"Class %q already has an io block for %s at %s; put all four limits in one block.", name, limits.Target(), rangeLine(first))
			valid = false
			continue
		}
		seenDevices[limits.Target()] = ioBlock.DefRange
		class.IO = append(class.IO, limits)
	}
	if len(content.Blocks) == 0 {
		d.errorf(b.DefRange, "Empty class",
			"Class %q has no io, pids, memory or cpu block, so it limits nothing. Add one, e.g. an io block with a device and write_bps = \"40MiB\", or pids { max = 512 }.", name)
		valid = false
	}
	if valid {
		d.policy.Classes[name] = class
	}
}

func (d *decoder) decodeIO(b *hcl.Block) (IOLimits, bool) {
	before := len(d.diags)
	content := d.content(b.Body, ioSchema)
	// A misspelt limit is already reported; "sets no limit" would only repeat it.
	misspelt := len(d.diags) > before
	var limits IOLimits
	ok := d.decodeTarget(b, content, &limits)
	fields := []struct {
		name  string
		into  *uint64
		bytes bool
	}{
		{"read_bps", &limits.ReadBPS, true},
		{"write_bps", &limits.WriteBPS, true},
		{"read_iops", &limits.ReadIOPS, false},
		{"write_iops", &limits.WriteIOPS, false},
	}
	protects, yields := content.Blocks.OfType("protect"), content.Blocks.OfType("yield")
	// Protection alone is a setting: a protected workload may have no cap, and a
	// yield's ceiling stands for the cap it lacks.
	anySet := len(protects) > 0 || len(yields) > 0
	if attr := content.Attributes["weight"]; attr != nil {
		anySet = true
		weight, good := d.weightValue(attr, limits)
		ok = ok && good
		limits.Weight = weight
	}
	for _, f := range fields {
		attr := content.Attributes[f.name]
		if attr == nil {
			continue
		}
		anySet = true
		value, good := d.quantityValue(attr, f.bytes)
		ok = ok && good
		*f.into = value
	}
	if !anySet && misspelt {
		ok = false
	} else if !anySet {
		d.errorf(b.DefRange, "io block sets no limit",
			"Set at least one of read_bps, write_bps, read_iops, write_iops, weight, e.g. write_bps = \"40MiB\".")
		ok = false
	} else if ok && limits.IsZero() && limits.Weight == 0 && len(protects) == 0 && len(yields) == 0 {
		d.errorf(b.DefRange, "io block sets no limit",
			"Every limit here is 0, which means unlimited; remove the block or set a limit, e.g. write_bps = \"40MiB\".")
		ok = false
	}
	if bursts := content.Blocks.OfType("burst"); len(bursts) > 0 && ok {
		ok = d.decodeBursts(bursts, &limits)
	}
	if (len(protects) > 0 || len(yields) > 0) && ok {
		ok = d.decodeSharing(protects, yields, &limits)
	}
	return limits, ok
}

func (d *decoder) decodeRule(b *hcl.Block) {
	content := d.content(b.Body, ruleSchema)
	name, ok := d.declare("rule", b, d.ruleRanges)
	rule := &Rule{Name: name, Scope: ScopeContainer}
	if attr := content.Attributes["class"]; attr != nil {
		class, set := d.stringValue(attr, `class = "bulk"`)
		if set {
			rule.Class = class
			if _, exists := d.policy.Classes[class]; !exists {
				ok = false
				if _, declared := d.classRanges[class]; !declared {
					names := slices.Sorted(maps.Keys(d.classRanges))
					d.errorf(attr.Expr.Range(), "Unknown class",
						"No class is named %q.%s Declared classes: %s.", class, didYouMean(class, names), listOrNone(names))
				}
			}
		} else {
			ok = false
		}
	} else {
		ok = false
	}
	if attr := content.Attributes["scope"]; attr != nil {
		scope, set := d.stringValue(attr, `scope = "pod"`)
		switch {
		case !set:
			ok = false
		case slices.Contains(scopeValues, scope):
			rule.Scope = Scope(scope)
		default:
			d.errorf(attr.Expr.Range(), "Unknown scope",
				"Scope %q is not one of \"container\" (each container its own limits) or \"pod\" (one budget shared by the pod).%s", scope, didYouMean(scope, scopeValues))
			ok = false
		}
		ok = ok && d.checkPodScopeBurst(rule, attr.Expr.Range()) && d.checkPodScopeSharing(rule, attr.Expr.Range())
	}
	for i, m := range content.Blocks {
		if i > 0 {
			d.errorf(m.DefRange, "Duplicate match block",
				"Rule %q already has a match block at %s; put every condition in one block (they must all match).", name, rangeLine(content.Blocks[0].DefRange))
			ok = false
			continue
		}
		ok = d.decodeMatch(m, rule) && ok
	}
	if ok {
		d.policy.Rules = append(d.policy.Rules, rule)
	}
}

// warnUnreachableRules flags rules after one without conditions: the first match wins,
// so they never apply. A warning, not an error: the policy still does what it says.
func (d *decoder) warnUnreachableRules() {
	for i, rule := range d.policy.Rules {
		if !rule.matchesEverything() {
			continue
		}
		for _, later := range d.policy.Rules[i+1:] {
			d.diags = append(d.diags, &hcl.Diagnostic{
				Severity: hcl.DiagWarning,
				Summary:  "Unreachable rule",
				Detail: fmt.Sprintf("Rule %q at %s has no conditions and matches every workload first, so rule %q never applies. Move %q above it, or give %q a match block.",
					rule.Name, rangeLine(d.ruleRanges[rule.Name]), later.Name, later.Name, rule.Name),
				Subject: d.ruleRanges[later.Name].Ptr(),
			})
		}
		return
	}
}

func (d *decoder) decodeMatch(b *hcl.Block, rule *Rule) bool {
	content := d.content(b.Body, matchSchema)
	ok := true
	list := func(name string, into *[]string) {
		if attr := content.Attributes[name]; attr != nil {
			values, good := d.stringListValue(attr, name+` = ["batch", "etl-*"]`)
			ok = ok && good
			*into = values
		}
	}
	list("namespaces", &rule.Namespaces)
	list("containers", &rule.Containers)
	list("images", &rule.Images)
	list("qos", &rule.QoS)
	if attr := content.Attributes["qos"]; attr != nil {
		for i, q := range rule.QoS {
			rule.QoS[i] = strings.ToLower(q)
			if !slices.Contains(qosValues, rule.QoS[i]) {
				d.errorf(attr.Expr.Range(), "Unknown QoS class",
					"%q is not a Kubernetes QoS class; use \"guaranteed\", \"burstable\" or \"besteffort\".%s", q, didYouMean(rule.QoS[i], qosValues))
				ok = false
			}
		}
	}
	maps := func(name string, into *map[string]string) {
		if attr := content.Attributes[name]; attr != nil {
			values, good := d.stringMapValue(attr, name+` = { team = "data" }`)
			ok = ok && good
			*into = values
		}
	}
	maps("pod_labels", &rule.PodLabels)
	maps("pod_annotations", &rule.PodAnnotations)
	if rule.Scope == ScopePod {
		for _, name := range []string{"containers", "images"} {
			if attr := content.Attributes[name]; attr != nil {
				d.errorf(attr.NameRange, "Container condition in a pod-scope rule",
					"A pod-scope rule gives one budget to the whole pod, so it cannot match on %s. Remove %s, or use scope = \"container\".", name, name)
				ok = false
			}
		}
	}
	return ok
}

func (d *decoder) decodeAnnotations(b *hcl.Block) {
	content := d.content(b.Body, annotationsSchema)
	settings := &d.policy.Annotations
	if attr := content.Attributes["enabled"]; attr != nil {
		settings.Enabled, _ = d.boolValue(attr, "enabled = true")
	}
	if attr := content.Attributes["allow_loosen"]; attr != nil {
		settings.AllowLoosen, _ = d.boolValue(attr, "allow_loosen = true")
	}
	if attr := content.Attributes["device"]; attr != nil {
		settings.Device, _ = d.resolveDevice(attr)
	} else if settings.Enabled && len(d.deviceRanges) == 0 {
		d.errorf(b.DefRange, "Annotations need a device",
			"Numeric annotations apply to one device; declare a device block or set device = \"/var/lib/containerd\" here.")
	}
	if attr := content.Attributes["classes"]; attr != nil {
		names, ok := d.stringListValue(attr, `classes = ["bulk"]`)
		if ok {
			for _, name := range names {
				if _, declared := d.classRanges[name]; !declared {
					known := slices.Sorted(maps.Keys(d.classRanges))
					d.errorf(attr.Expr.Range(), "Unknown class",
						"No class is named %q.%s Declared classes: %s.", name, didYouMean(name, known), listOrNone(known))
				}
			}
			settings.Classes = names
		}
	}
	for _, f := range []struct {
		name  string
		into  *uint64
		bytes bool
	}{
		{"max_read_bps", &settings.MaxReadBPS, true},
		{"max_write_bps", &settings.MaxWriteBPS, true},
		{"max_read_iops", &settings.MaxReadIOPS, false},
		{"max_write_iops", &settings.MaxWriteIOPS, false},
	} {
		if attr := content.Attributes[f.name]; attr != nil {
			*f.into, _ = d.quantityValue(attr, f.bytes)
		}
	}
}

func rangeLine(r hcl.Range) string { return fmt.Sprintf("%s:%d", r.Filename, r.Start.Line) }

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(quoted, ", ")
}
