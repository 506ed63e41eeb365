// Package policy is part of criguard; see ../README.md.
package policy
