package proxy

import "errors"

var (
	// ErrSocketInUse means another process is serving on the listen socket.
	ErrSocketInUse = errors.New("proxy: socket is in use by another process")
	// ErrBadEndpoint means an endpoint is neither unix://PATH nor an absolute path.
	ErrBadEndpoint = errors.New("proxy: endpoint must be unix:///path or an absolute path")
)
