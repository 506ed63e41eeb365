package policy

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
	}{
		{"0", 0},
		{"1024", 1024},
		{"1024B", 1024},
		{"40MB", 40_000_000},
		{"40M", 40_000_000},
		{"100MiB", 100 << 20},
		{"100Mi", 100 << 20},
		{"100mib", 100 << 20},
		{"1.5Gi", 3 << 29},
		{"1.5GiB", 3 << 29},
		{".5K", 500},
		{"2kB", 2000},
		{"1Ti", 1 << 40},
		{"1TB", 1e12},
		{" 40 MiB ", 40 << 20},
		{"16EiB", 0}, // sentinel: checked as an error below
		{"18446744073709551615", 1<<64 - 1},
	}
	for _, tt := range tests {
		got, err := ParseBytes(tt.in)
		if tt.in == "16EiB" {
			if err == nil {
				t.Errorf("ParseBytes(%q) = %d, want an unknown-unit error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseBytesRefuses(t *testing.T) {
	for in, why := range map[string]string{
		"":                      "not a number",
		"MiB":                   "not a number",
		"-1":                    "negative",
		"-10MiB":                "negative",
		"1.5":                   "whole number of bytes",
		"0.1KiB":                "whole number of bytes",
		"1e3":                   "unknown unit",
		"NaN":                   "not a number",
		"Inf":                   "not a number",
		"+5":                    "not a number",
		"1..5":                  "not a number",
		"40XB":                  `unknown unit "XB"`,
		"40 MiBps":              "unknown unit",
		"18446744073709551616":  "larger than",
		"16PiB0":                "unknown unit",
		"20000000PiB":           "larger than",
		strings.Repeat("9", 65): "longer than",
		"1,000":                 "unknown unit",
		"0x10":                  "unknown unit",
	} {
		got, err := ParseBytes(in)
		if err == nil || !strings.Contains(err.Error(), why) || !errors.Is(err, ErrPolicyBadQuantity) {
			t.Errorf("ParseBytes(%q) = %d, %v; want an error saying %q", in, got, err, why)
		}
	}
}

func TestParseCount(t *testing.T) {
	if n, err := ParseCount(" 2000 "); n != 2000 || err != nil {
		t.Errorf("ParseCount(2000) = %d, %v", n, err)
	}
	for _, in := range []string{"", "-1", "+1", "1.5", "1k", "NaN", "18446744073709551616", strings.Repeat("1", 100)} {
		if n, err := ParseCount(in); err == nil || !errors.Is(err, ErrPolicyBadQuantity) {
			t.Errorf("ParseCount(%q) = %d, %v; want an error", in, n, err)
		}
	}
}

func TestFormatBytesRoundTrips(t *testing.T) {
	for _, n := range []uint64{0, 1, 1000, 1024, 40 << 20, 3 << 29, 1<<64 - 1, 1 << 50, 5 << 60} {
		text := FormatBytes(n)
		back, err := ParseBytes(text)
		if err != nil || back != n {
			t.Errorf("ParseBytes(FormatBytes(%d) = %q) = %d, %v", n, text, back, err)
		}
	}
	if got := FormatBytes(100 << 20); got != "100MiB" {
		t.Errorf("FormatBytes(100MiB) = %q", got)
	}
}

func FuzzParseBytes(f *testing.F) {
	for _, seed := range []string{"100MiB", "40MB", "1.5Gi", "1024", "-1", "1e30", "NaN", ".5K", "18446744073709551615", "1.0000000000000000001Ki"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseBytes(s)
		if err != nil {
			if !errors.Is(err, ErrPolicyBadQuantity) {
				t.Fatalf("ParseBytes(%q) error %v does not wrap ErrPolicyBadQuantity", s, err)
			}
			return
		}
		if strings.Contains(s, "-") {
			t.Fatalf("ParseBytes(%q) = %d: accepted a negative", s, n)
		}
		// Whatever parses must survive a round trip through its canonical forms.
		for _, text := range []string{strconv.FormatUint(n, 10), FormatBytes(n)} {
			if back, err := ParseBytes(text); err != nil || back != n {
				t.Fatalf("ParseBytes(%q) = %d, but %q parses to %d, %v", s, n, text, back, err)
			}
		}
		// A plain integer is its own value.
		if plain, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64); err == nil && plain != n {
			t.Fatalf("ParseBytes(%q) = %d, want %d", s, n, plain)
		}
	})
}
