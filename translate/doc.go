// Package translate is part of criguard; see ../README.md.
package translate
