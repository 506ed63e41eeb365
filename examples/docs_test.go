package examples

import (
	"bufio"
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/criguard/criguard/policy"
)

// hclBlock is one ```hcl fenced block of a Markdown file.
type hclBlock struct {
	file string
	line int // of the opening fence
	info string
	src  string
}

// hclBlocks returns the ```hcl blocks of a Markdown text. The info string after
// "hcl" marks a block on purpose partial or wrong: ```hcl fragment.
func hclBlocks(file string, text []byte) ([]hclBlock, error) {
	var blocks []hclBlock
	var open *hclBlock
	var body strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		fence := strings.HasPrefix(strings.TrimSpace(line), "```")
		switch {
		case open == nil && fence:
			info := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "```"))
			if len(info) > 0 && info[0] == "hcl" {
				open = &hclBlock{file: file, line: n, info: strings.Join(info[1:], " ")}
				body.Reset()
			} else if len(info) > 0 || strings.TrimSpace(line) == "```" {
				// Another language's block, or a bare one: skip to its end.
				open = &hclBlock{line: -n}
			}
		case open != nil && fence && strings.TrimSpace(line) == "```":
			if open.line > 0 {
				open.src = body.String()
				blocks = append(blocks, *open)
			}
			open = nil
		case open != nil && open.line > 0:
			body.WriteString(line + "\n")
		}
	}
	if open != nil {
		return nil, fmt.Errorf("%s:%d: a fenced block is never closed", file, max(open.line, -open.line))
	}
	return blocks, sc.Err()
}

// Every policy a page teaches loads: the reference cannot drift from the parser.
func TestEveryDocsPolicyBlockLoads(t *testing.T) {
	files, err := filepath.Glob("../docs/*.md")
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs found (%v)", err)
	}
	files = append(files, "../README.md")
	loaded := 0
	for _, file := range files {
		blocks, err := hclBlocks(file, []byte(read(t, file)))
		if err != nil {
			t.Error(err)
			continue
		}
		for _, b := range blocks {
			name := fmt.Sprintf("%s, the block at line %d", strings.TrimPrefix(b.file, "../"), b.line)
			switch b.info {
			case "fragment":
				continue
			case "":
			default:
				t.Errorf("%s: unknown info string %q after ```hcl (only \"fragment\" is known)", name, b.info)
				continue
			}
			p, diags := policy.Parse([]byte(b.src), name)
			if diags.HasErrors() {
				t.Errorf("%v", diags) // each diagnostic names the file and the block
				continue
			}
			if len(p.Rules) == 0 && len(p.Classes) == 0 {
				t.Errorf("%s: the block declares neither a class nor a rule", name)
			}
			loaded++
		}
	}
	// The reference has several: finding none means the scan is broken.
	if loaded < 3 {
		t.Errorf("loaded %d policy blocks from %d Markdown files; the scan finds too few", loaded, len(files))
	}
}

// The installed default policy loads and throttles nothing.
func TestPackagedPolicyThrottlesNothing(t *testing.T) {
	p, diags := policy.Parse([]byte(read(t, "../packaging/policy.hcl")), "packaging/policy.hcl")
	if diags.HasErrors() {
		t.Fatalf("packaging/policy.hcl: %v", diags)
	}
	if len(p.Rules) != 0 || len(p.Classes) != 0 || len(p.Devices) != 0 {
		t.Errorf("packaging/policy.hcl must throttle nothing, declares %d devices, %d classes, %d rules", len(p.Devices), len(p.Classes), len(p.Rules))
	}
	// Its commented example is a real policy once uncommented.
	_, commented, ok := strings.Cut(read(t, "../packaging/policy.hcl"), "\n# device ")
	if !ok {
		t.Fatal("packaging/policy.hcl has no commented example starting with a device block")
	}
	var example strings.Builder
	for _, line := range strings.Split("# device "+commented, "\n") {
		example.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "#"), " ") + "\n")
	}
	ex, diags := policy.Parse([]byte(example.String()), "packaging/policy.hcl (uncommented)")
	if diags.HasErrors() {
		t.Fatalf("the commented example in packaging/policy.hcl:\n%s\n%v", example.String(), diags)
	}
	if len(ex.Rules) != 1 || len(ex.Classes) != 1 {
		t.Errorf("the commented example should give one class and one rule, got %+v", ex)
	}
}

func TestHCLBlocksScan(t *testing.T) {
	md := "text\n```hcl\nclass \"a\" {}\n```\n```sh\n```hcl inside\n```\n```hcl fragment\nx = 1\n```\n"
	blocks, err := hclBlocks("t.md", []byte(md))
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 2 || blocks[0].line != 2 || blocks[0].src != "class \"a\" {}\n" || blocks[1].info != "fragment" || blocks[1].src != "x = 1\n" {
		t.Errorf("hclBlocks = %+v", blocks)
	}
	if _, err := hclBlocks("t.md", []byte("```hcl\nclass \"a\" {}\n")); err == nil {
		t.Error("an unclosed block was not reported")
	}
}
