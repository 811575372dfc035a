package main

import (
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger returns a zap logger writing to w at level ("debug", "info", "warn", "error") in format
// "json" (one object per line, for log collectors) or "console" (for people). Keys are camelCase,
// times RFC 3339 with milliseconds. Writes to w are serialised.
func newLogger(level, format string, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: must be debug, info, warn or error", level)
	}
	enc := zapcore.EncoderConfig{
		TimeKey:        "time",
		LevelKey:       "level",
		NameKey:        "logger",
		CallerKey:      "caller",
		MessageKey:     "msg",
		StacktraceKey:  "stacktrace",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     zapcore.TimeEncoderOfLayout("2006-01-02T15:04:05.000Z07:00"),
		EncodeDuration: zapcore.StringDurationEncoder,
		EncodeCaller:   zapcore.ShortCallerEncoder,
	}
	var encoder zapcore.Encoder
	switch format {
	case "json":
		encoder = zapcore.NewJSONEncoder(enc)
	case "console":
		enc.EncodeLevel = zapcore.CapitalLevelEncoder
		enc.EncodeTime = zapcore.TimeEncoderOfLayout(time.TimeOnly + ".000")
		encoder = zapcore.NewConsoleEncoder(enc)
	default:
		return nil, fmt.Errorf("log format %q: must be json or console", format)
	}
	core := zapcore.NewCore(encoder, zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(core, zap.AddStacktrace(zapcore.DPanicLevel)), nil
}

// batchKeys are the log fields that tie an entry to a batch, whose outcome dev prints anyway.
var batchKeys = map[string]bool{"batchKey": true, "batchId": true}

// newDevLogger is dev's logger: every entry at level goes to file (in format), and entries at error level that are not about a batch (whose outcome line says it
// already) go to show as one short line. Writes to file are serialised.
func newDevLogger(level, format string, file io.Writer, show func(msg string)) (*zap.Logger, error) {
	base, err := newLogger(level, format, file)
	if err != nil {
		return nil, err
	}
	return base.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewTee(c, &errorLineCore{show: show})
	})), nil
}

// errorLineCore turns error entries into one line each: the message and the "error" field, cut
// short; entries with a batch field are left to the outcome lines.
type errorLineCore struct {
	show   func(msg string)
	fields []zapcore.Field // from With
	batch  bool            // a With field ties the logger to a batch
}

func (c *errorLineCore) Enabled(l zapcore.Level) bool { return l >= zapcore.ErrorLevel }

func (c *errorLineCore) With(fields []zapcore.Field) zapcore.Core {
	n := &errorLineCore{show: c.show, fields: append(append([]zapcore.Field(nil), c.fields...), fields...), batch: c.batch}
	for _, f := range fields {
		n.batch = n.batch || batchKeys[f.Key]
	}
	return n
}

func (c *errorLineCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) && !c.batch {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *errorLineCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	msg := e.Message
	for _, f := range append(append([]zapcore.Field(nil), c.fields...), fields...) {
		if batchKeys[f.Key] {
			return nil
		}
		if f.Key == "error" {
			if err, ok := f.Interface.(error); ok {
				msg += ": " + err.Error()
			}
		}
	}
	c.show(cut(oneLine(msg), 200))
	return nil
}

func (c *errorLineCore) Sync() error { return nil }
