package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strconv"
	"time"

	"github.com/criguard/criguard/proxy"
)

type serveConfig struct {
	listen          string
	runtimeEndpoint string
	imageEndpoint   string
	socketMode      fileMode
	shutdownGrace   time.Duration
	maxMsgSize      int
	logLevel        slog.Level
	logFormat       string
}

// fileMode parses an octal permission such as 0660.
type fileMode fs.FileMode

func (m *fileMode) String() string { return fmt.Sprintf("%#o", fs.FileMode(*m)) }
func (m *fileMode) Set(s string) error {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return fmt.Errorf("want an octal mode such as 0660, got %q", s)
	}
	*m = fileMode(v)
	return nil
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := serveConfig{socketMode: 0o660}
	fs := newFlagSet("serve", stderr)
	fs.StringVar(&cfg.listen, "listen", "unix:///run/criguard/criguard.sock", "socket kubelet and crictl connect to")
	fs.StringVar(&cfg.runtimeEndpoint, "runtime-endpoint", "unix:///run/containerd/containerd.sock", "the container runtime's CRI socket")
	fs.StringVar(&cfg.imageEndpoint, "image-endpoint", "", "the image service's CRI socket (default: the runtime endpoint)")
	fs.Var(&cfg.socketMode, "socket-mode", "permissions of the listen socket")
	fs.DurationVar(&cfg.shutdownGrace, "shutdown-grace", 10*time.Second, "how long in-flight calls may finish after SIGTERM")
	fs.IntVar(&cfg.maxMsgSize, "max-msg-size", proxy.DefaultMaxMsgSize, "largest CRI message forwarded each way, in bytes")
	fs.TextVar(&cfg.logLevel, "log-level", slog.LevelInfo, "debug, info, warn or error")
	fs.StringVar(&cfg.logFormat, "log-format", "text", "text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("serve takes no arguments, got %q", fs.Args())}
	}
	log, err := newLogger(stderr, cfg.logFormat, cfg.logLevel)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	return serve(ctx, cfg, log)
}

func newLogger(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, got %q", format)
}

func serve(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	p, err := proxy.New(proxy.Options{
		RuntimeEndpoint: cfg.runtimeEndpoint,
		ImageEndpoint:   cfg.imageEndpoint,
		MaxMsgSize:      cfg.maxMsgSize,
		Logger:          log,
	})
	if err != nil {
		return err
	}
	ln, err := proxy.Listen(cfg.listen, fs.FileMode(cfg.socketMode))
	if err != nil {
		return err
	}
	log.Info("criguard serving", "version", version, "listen", cfg.listen,
		"runtime", cfg.runtimeEndpoint, "image", cfg.imageEndpoint)

	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", cfg.shutdownGrace)
	p.Shutdown(cfg.shutdownGrace)
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped")
	return nil
}
