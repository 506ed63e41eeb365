package policy

import (
	"fmt"
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

const unitHelp = `use a whole number of bytes or a number with a unit: K, M, G, T (SI, ×1000) or Ki, Mi, Gi, Ti (IEC, ×1024), optionally followed by B, e.g. "100MiB" or "40MB"`

// ParseBytes parses a byte quantity: "1024", "40MB", "100MiB", "1.5Gi". Plain numbers
// are bytes. It refuses negatives, exponents, overflow and fractions of a byte.
func ParseBytes(s string) (uint64, error) {
	if len(s) > maxQuantityLen {
		return 0, fmt.Errorf("%q…: longer than %d characters: %w", s[:16], maxQuantityLen, ErrPolicyBadQuantity)
	}
	text := strings.TrimSpace(s)
	end := 0
	for end < len(text) && (text[end] >= '0' && text[end] <= '9' || text[end] == '.') {
		end++
	}
	number, unit := text[:end], strings.TrimSpace(text[end:])
	if strings.HasPrefix(text, "-") {
		return 0, fmt.Errorf("%q: negative: %w", s, ErrPolicyBadQuantity)
	}
	if number == "" || number == "." || strings.Count(number, ".") > 1 {
		return 0, fmt.Errorf("%q: not a number: %s: %w", s, unitHelp, ErrPolicyBadQuantity)
	}
	key := strings.ToLower(unit)
	if key != "b" {
		key = strings.TrimSuffix(key, "b")
	} else {
		key = ""
	}
	factor, ok := byteUnits[key]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q: %s: %w", s, unit, unitHelp, ErrPolicyBadQuantity)
	}
	// Exact arithmetic: "1.5Gi" is whole bytes, "1.5" is not.
	value, ok := new(big.Rat).SetString(number)
	if !ok {
		return 0, fmt.Errorf("%q: not a number: %w", s, ErrPolicyBadQuantity)
	}
	value.Mul(value, new(big.Rat).SetUint64(factor))
	if !value.IsInt() {
		return 0, fmt.Errorf("%q: not a whole number of bytes: %w", s, ErrPolicyBadQuantity)
	}
	if !value.Num().IsUint64() {
		return 0, fmt.Errorf("%q: larger than %d bytes: %w", s, uint64(1<<64-1), ErrPolicyBadQuantity)
	}
	return value.Num().Uint64(), nil
}

// ParseCount parses an operation count (IOPS): a plain non-negative integer.
func ParseCount(s string) (uint64, error) {
	if len(s) > maxQuantityLen {
		return 0, fmt.Errorf("%q…: longer than %d characters: %w", s[:16], maxQuantityLen, ErrPolicyBadQuantity)
	}
	text := strings.TrimSpace(s)
	if strings.HasPrefix(text, "-") {
		return 0, fmt.Errorf("%q: negative: %w", s, ErrPolicyBadQuantity)
	}
	if strings.HasPrefix(text, "+") || text == "" {
		return 0, fmt.Errorf("%q: not a whole number of operations per second: %w", s, ErrPolicyBadQuantity)
	}
	n, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: not a whole number of operations per second: %w", s, ErrPolicyBadQuantity)
	}
	return n, nil
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
