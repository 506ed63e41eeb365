// Package proxy is part of criguard; see ../README.md.
package proxy
