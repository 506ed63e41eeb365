package nriplugin

import (
	"context"
	"fmt"
	"log/slog"
)

// nriLogger sends the NRI stub's own lines to criguard's log, one level down:
// the stub is chatty at info about every registration step.
type nriLogger struct{ log *slog.Logger }

func (l nriLogger) Debugf(ctx context.Context, format string, args ...any) {
	l.log.DebugContext(ctx, "nri: "+fmt.Sprintf(format, args...))
}

func (l nriLogger) Infof(ctx context.Context, format string, args ...any) {
	l.log.DebugContext(ctx, "nri: "+fmt.Sprintf(format, args...))
}

func (l nriLogger) Warnf(ctx context.Context, format string, args ...any) {
	l.log.WarnContext(ctx, "nri: "+fmt.Sprintf(format, args...))
}

func (l nriLogger) Errorf(ctx context.Context, format string, args ...any) {
	l.log.ErrorContext(ctx, "nri: "+fmt.Sprintf(format, args...))
}
