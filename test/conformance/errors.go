package conformance

import "errors"

// ErrNoSpecs means a report held no spec at all: critest did not run.
var ErrNoSpecs = errors.New("conformance: report has no specs")
