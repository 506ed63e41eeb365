package proxy

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// DefaultKubeletNames are the executables taken for kubelet.
var DefaultKubeletNames = []string{"kubelet"}

// Peer is the process at the other end of a connection to criguard's socket, read
// once when it connects (SO_PEERCRED), never per call.
type Peer struct {
	PID int32
	UID uint32
	// Exe is the base name of the peer's executable, or its comm when /proc/PID/exe
	// cannot be read; "" when the peer is unknown (no unix socket, or a process in
	// another pid namespace, which SO_PEERCRED gives as pid 0).
	Exe string
	// Kubelet is true for kubelet: an executable of that name, run by root or by
	// criguard's own user (a rootless node).
	Kubelet bool
}

// KubeletObserver is an optional interface of an Observer: it is told of every
// call kubelet makes through the proxy, kubelet recognised by its connection's peer.
type KubeletObserver interface {
	KubeletCalled()
}

// PeerFromContext is the peer of the call in ctx, as resolved when its connection
// was made.
func PeerFromContext(ctx context.Context) (Peer, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Peer{}, false
	}
	info, ok := p.AuthInfo.(peerInfo)
	return info.peer, ok
}

// peerCredentials are the server's transport credentials: no security of their
// own (the socket's mode is the access control), only the peer read at the
// handshake, once per connection, and carried by every call on it.
type peerCredentials struct {
	procRoot     string
	kubeletNames []string
}

type peerInfo struct {
	credentials.CommonAuthInfo
	peer Peer
}

func (peerInfo) AuthType() string { return "peercred" }

var errClientSide = errors.New("proxy: peer credentials serve the server side only")

func (c peerCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return conn, peerInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}, peer: c.readPeer(conn)}, nil
}

func (peerCredentials) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errClientSide
}

func (peerCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "insecure"}
}

func (c peerCredentials) Clone() credentials.TransportCredentials { return c }

func (peerCredentials) OverrideServerName(string) error { return nil }

// readPeer reads the credentials of a unix socket's peer and names its executable.
func (c peerCredentials) readPeer(conn net.Conn) Peer {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return Peer{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return Peer{}
	}
	p := Peer{PID: cred.Pid, UID: cred.Uid}
	if p.PID <= 0 {
		return p
	}
	procDir := filepath.Join(c.procRoot, strconv.Itoa(int(p.PID)))
	if exe, err := os.Readlink(filepath.Join(procDir, "exe")); err == nil {
		p.Exe = filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
	} else if comm, err := os.ReadFile(filepath.Join(procDir, "comm")); err == nil {
		p.Exe = strings.TrimSpace(string(comm))
	}
	p.Kubelet = p.Exe != "" && slices.Contains(c.kubeletNames, p.Exe) && (p.UID == 0 || p.UID == uint32(os.Getuid()))
	return p
}
