package policy

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// MaxFileSize is the largest policy file accepted; a real policy is a few KiB, so a
// larger file is a mistake (a log or a binary given by error), not a policy.
const MaxFileSize = 1 << 20

// LoadError is a policy file with errors. It unwraps to ErrPolicyInvalid and to the
// hcl.Diagnostics, so errors.As(err, &diags) recovers every diagnostic.
type LoadError struct {
	Filename string
	Source   []byte
	Diags    hcl.Diagnostics
}

// Error renders every error diagnostic as "file:line,col: summary; detail", one a line.
func (e *LoadError) Error() string {
	var lines []string
	for _, d := range e.Diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		lines = append(lines, FormatDiagnostic(d))
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the sentinels and the diagnostics; a file of only white space is
// ErrPolicyEmpty too.
func (e *LoadError) Unwrap() []error {
	if len(bytes.TrimSpace(e.Source)) == 0 {
		return []error{ErrPolicyInvalid, ErrPolicyEmpty, e.Diags}
	}
	return []error{ErrPolicyInvalid, e.Diags}
}

// FormatDiagnostic renders one diagnostic as "file:line,col: summary; detail".
func FormatDiagnostic(d *hcl.Diagnostic) string {
	text := d.Summary
	if d.Detail != "" {
		text += "; " + d.Detail
	}
	if d.Subject == nil {
		return text
	}
	return fmt.Sprintf("%s:%d,%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, text)
}

// ReadFile reads a policy file, refusing what cannot be one: a directory or device, or
// a file above MaxFileSize.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("read policy %s: %s: %w", path, fileKind(info.Mode()), ErrPolicyNotRegular)
	}
	src, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read policy %s: %w", path, err)
	}
	if len(src) > MaxFileSize {
		return nil, fmt.Errorf("read policy %s: larger than %d bytes: %w", path, MaxFileSize, ErrPolicyTooLarge)
	}
	return src, nil
}

func fileKind(mode os.FileMode) string {
	switch {
	case mode.IsDir():
		return "is a directory"
	case mode&os.ModeNamedPipe != 0:
		return "is a named pipe"
	case mode&os.ModeSocket != 0:
		return "is a socket"
	case mode&os.ModeDevice != 0:
		return "is a device"
	}
	return "is " + mode.Type().String()
}

// Load reads and parses a policy file. A file with errors returns a *LoadError.
func Load(path string) (*Policy, error) {
	p, _, err := load(path)
	return p, err
}

func load(path string) (*Policy, []byte, error) {
	src, err := ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	p, diags := Parse(src, path)
	if diags.HasErrors() {
		return nil, src, &LoadError{Filename: path, Source: src, Diags: diags}
	}
	return p, src, nil
}

// Parse parses and validates a policy. It reports every problem it finds, sorted by
// position, and returns a nil policy when any of them is an error.
func Parse(src []byte, filename string) (*Policy, hcl.Diagnostics) {
	if diags := checkText(src, filename); diags.HasErrors() {
		return nil, diags
	}
	if diags := checkNesting(src, filename); diags.HasErrors() {
		return nil, diags
	}
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, sortDiagnostics(diags)
	}
	d := &decoder{
		policy: &Policy{
			Filename: filename,
			Source:   src,
			Devices:  map[string]string{},
			Classes:  map[string]*Class{},
		},
		deviceRanges: map[string]hcl.Range{},
		classRanges:  map[string]hcl.Range{},
		ruleRanges:   map[string]hcl.Range{},
	}
	d.decodeFile(file.Body)
	if d.diags.HasErrors() {
		return nil, sortDiagnostics(d.diags)
	}
	return d.policy, sortDiagnostics(d.diags)
}

// checkText refuses what is not text before HCL turns it into hundreds of diagnostics,
// and a file of only white space: more likely a save cut short (or a power cut after
// a rename without fsync) than a wish for no rules, which a comment says.
func checkText(src []byte, filename string) hcl.Diagnostics {
	if len(src) > MaxFileSize {
		r := hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos}
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Policy file too large",
			Detail:   fmt.Sprintf("The file has %d bytes; a policy may have at most %d. Is this the right file?", len(src), MaxFileSize),
			Subject:  &r,
		}}
	}
	if len(bytes.TrimSpace(src)) == 0 {
		r := hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos}
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Empty policy file",
			Detail:   "The file has no content; criguard refuses it as it refuses a broken one (the last good policy, or hands off). To run with no rules, write a comment such as \"# no throttles\".",
			Subject:  &r,
		}}
	}
	bad := bytes.IndexByte(src, 0)
	if bad < 0 && !utf8.Valid(src) {
		for i := 0; i < len(src); {
			r, size := utf8.DecodeRune(src[i:])
			if r == utf8.RuneError && size == 1 {
				bad = i
				break
			}
			i += size
		}
	}
	if bad < 0 {
		return nil
	}
	pos := positionOf(src, bad)
	r := hcl.Range{Filename: filename, Start: pos, End: pos}
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Binary policy file",
		Detail:   fmt.Sprintf("Byte %d is not UTF-8 text; a policy is an HCL text file. Is this the right file?", bad),
		Subject:  &r,
	}}
}

// maxNesting bounds how deep brackets, blocks and templates nest. A policy needs 3
// (rule, match, pod_labels); HCL's parser recurses once per level and a megabyte of
// "[" would overflow the stack and kill the process.
const maxNesting = 32

// checkNesting refuses deep nesting from the tokens, which the lexer produces without
// recursion, before the parser sees them.
func checkNesting(src []byte, filename string) hcl.Diagnostics {
	tokens, _ := hclsyntax.LexConfig(src, filename, hcl.InitialPos)
	depth := 0
	for _, tok := range tokens {
		switch tok.Type {
		case hclsyntax.TokenOBrace, hclsyntax.TokenOBrack, hclsyntax.TokenOParen, hclsyntax.TokenOQuote,
			hclsyntax.TokenOHeredoc, hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
			depth++
		case hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen, hclsyntax.TokenCQuote,
			hclsyntax.TokenCHeredoc, hclsyntax.TokenTemplateSeqEnd:
			depth = max(depth-1, 0)
		}
		if depth > maxNesting {
			return hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "Nesting too deep",
				Detail:   fmt.Sprintf("Brackets, blocks and strings nest more than %d levels deep here; a policy needs 3 or 4. Is a bracket left open?", maxNesting),
				Subject:  tok.Range.Ptr(),
			}}
		}
	}
	return nil
}

func positionOf(src []byte, offset int) hcl.Pos {
	line := 1 + bytes.Count(src[:offset], []byte("\n"))
	col := offset - bytes.LastIndexByte(src[:offset], '\n')
	return hcl.Pos{Line: line, Column: col, Byte: offset}
}

func sortDiagnostics(diags hcl.Diagnostics) hcl.Diagnostics {
	slices.SortStableFunc(diags, func(a, b *hcl.Diagnostic) int {
		switch {
		case a.Subject == nil && b.Subject == nil:
			return 0
		case a.Subject == nil:
			return -1
		case b.Subject == nil:
			return 1
		}
		return a.Subject.Start.Byte - b.Subject.Start.Byte
	})
	return diags
}
