// Package criservice is part of criguard; see ../README.md.
package criservice
