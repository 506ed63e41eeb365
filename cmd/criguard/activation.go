package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/criguard/criguard/proxy"
)

// listenCRI returns the socket kubelet connects to. Under systemd socket
// activation (LISTEN_FDS) it is the socket systemd holds: it stays open while
// criguard restarts, so kubelet's connections wait in its backlog instead of
// being refused. Otherwise criguard binds --listen itself, as it always did.
func listenCRI(endpoint string, mode fs.FileMode, log *slog.Logger) (ln net.Listener, activated bool, err error) {
	// Listeners unsets LISTEN_* so that nothing criguard runs inherits them.
	inherited, err := activation.Listeners()
	if err != nil {
		return nil, false, fmt.Errorf("socket activation: %w", err)
	}
	if len(inherited) == 0 {
		ln, err := proxy.Listen(endpoint, mode)
		return ln, false, err
	}
	ln, err = pickActivated(inherited, endpoint, log)
	if err != nil {
		return nil, false, err
	}
	return ln, true, nil
}

// pickActivated chooses, among the sockets systemd passed, the unix stream
// socket at --listen's path; a single socket is taken whatever its path, since
// the unit's ListenStream= is then what the admin meant. The others are closed.
func pickActivated(inherited []net.Listener, endpoint string, log *slog.Logger) (net.Listener, error) {
	want, err := proxy.SocketPath(endpoint)
	if err != nil {
		return nil, err
	}
	var unix []net.Listener
	for _, ln := range inherited {
		// Listeners leaves nil where an fd is not a listening socket.
		if ln != nil && ln.Addr().Network() == "unix" {
			unix = append(unix, ln)
		}
	}
	var chosen net.Listener
	switch {
	case len(unix) == 1:
		chosen = unix[0]
		if got := chosen.Addr().String(); got != want {
			log.Warn("serving on the socket systemd passed, not on --listen", "socket", got, "listen", want)
		}
	default:
		for _, ln := range unix {
			if ln.Addr().String() == want {
				chosen = ln
			}
		}
	}
	for _, ln := range inherited {
		if ln != nil && ln != chosen {
			ln.Close()
		}
	}
	if chosen == nil {
		return nil, fmt.Errorf("%w: %d fds passed, %d unix stream sockets, none at %s", errNoActivatedSocket, len(inherited), len(unix), want)
	}
	return chosen, nil
}

var errNoActivatedSocket = errors.New("socket activation: no usable socket among LISTEN_FDS")
