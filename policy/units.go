package policy

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// maxQuantityLen bounds the text ParseBytes looks at, so that a hostile annotation
// cannot make it build a huge number; the longest uint64 with a unit is far shorter.
const maxQuantityLen = 64

// byteUnits maps a lower-cased unit (without the optional trailing "b") to its factor.
var byteUnits = map[string]uint64{
	"":   1,
	"k":  1e3,
	"m":  1e6,
	"g":  1e9,
	"t":  1e12,
	"p":  1e15,
	"ki": 1 << 10,
	"mi": 1 << 20,
	"gi": 1 << 30,
	"ti": 1 << 40,
	"pi": 1 << 50,
}

const unitHelp = `Use a whole number of bytes, or a number with a unit: K, M, G, T (SI, ×1000) or Ki, Mi, Gi, Ti (IEC, ×1024), optionally followed by B, e.g. "100MiB" or "40MB"`

// ParseBytes parses a byte quantity: "1024", "40MB", "100MiB", "1.5Gi". Plain numbers
// are bytes. It refuses negatives, exponents, overflow and fractions of a byte.
func ParseBytes(s string) (uint64, error) {
	n, problem := parseBytes(s)
	if problem != "" {
		return 0, fmt.Errorf("%s: %s: %w", quoteQuantity(s), problem, ErrPolicyBadQuantity)
	}
	return n, nil
}

// ParseCount parses an operation count (IOPS): a plain non-negative integer.
func ParseCount(s string) (uint64, error) {
	n, problem := parseCount(s)
	if problem != "" {
		return 0, fmt.Errorf("%s: %s: %w", quoteQuantity(s), problem, ErrPolicyBadQuantity)
	}
	return n, nil
}

func quoteQuantity(s string) string {
	if len(s) > maxQuantityLen {
		return fmt.Sprintf("%q…", s[:16])
	}
	return fmt.Sprintf("%q", s)
}

// parseBytes returns the value, or what is wrong with s.
func parseBytes(s string) (uint64, string) {
	if len(s) > maxQuantityLen {
		return 0, fmt.Sprintf("longer than %d characters", maxQuantityLen)
	}
	text := strings.TrimSpace(s)
	if strings.HasPrefix(text, "-") {
		return 0, "negative"
	}
	end := 0
	for end < len(text) && (text[end] >= '0' && text[end] <= '9' || text[end] == '.') {
		end++
	}
	number, unit := text[:end], strings.TrimSpace(text[end:])
	if number == "" || number == "." || strings.Count(number, ".") > 1 {
		return 0, "not a number"
	}
	key := strings.ToLower(unit)
	if key != "b" {
		key = strings.TrimSuffix(key, "b")
	} else {
		key = ""
	}
	factor, ok := byteUnits[key]
	if !ok {
		return 0, fmt.Sprintf("unknown unit %q", unit)
	}
	// Exact arithmetic: "1.5Gi" is whole bytes, "1.5" is not.
	value, ok := new(big.Rat).SetString(number)
	if !ok {
		return 0, "not a number"
	}
	value.Mul(value, new(big.Rat).SetUint64(factor))
	if !value.IsInt() {
		return 0, "not a whole number of bytes"
	}
	if !value.Num().IsUint64() {
		return 0, fmt.Sprintf("larger than %d bytes", uint64(math.MaxUint64))
	}
	return value.Num().Uint64(), ""
}

// parseCount returns the value, or what is wrong with s.
func parseCount(s string) (uint64, string) {
	if len(s) > maxQuantityLen {
		return 0, fmt.Sprintf("longer than %d characters", maxQuantityLen)
	}
	text := strings.TrimSpace(s)
	if strings.HasPrefix(text, "-") {
		return 0, "negative"
	}
	if strings.HasPrefix(text, "+") {
		return 0, "not a whole number"
	}
	n, err := strconv.ParseUint(text, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Sprintf("larger than %d", uint64(math.MaxUint64))
	}
	if err != nil {
		return 0, "not a whole number"
	}
	return n, ""
}

// FormatBytes renders n with the largest IEC unit that divides it exactly, so that the
// text parses back to n ("100MiB", "1000", "0").
func FormatBytes(n uint64) string {
	units := []struct {
		suffix string
		factor uint64
	}{{"PiB", 1 << 50}, {"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
	for _, u := range units {
		if n != 0 && n%u.factor == 0 {
			return strconv.FormatUint(n/u.factor, 10) + u.suffix
		}
	}
	return strconv.FormatUint(n, 10)
}
