// Package logging builds pptpgw's zap logger and holds the rate limiter that keeps per-packet
// events (malformed messages, refused calls) from flooding the log.
package logging

import (
	"fmt"
	"io"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Sampling: per second and per (level, message), the first samplingInitial entries are logged,
// then one in samplingThereafter. These are zap's production values; they only bite when one
// message repeats more than 100 times a second, which for this daemon means a packet-path log
// that escaped rate limiting.
const (
	samplingTick       = time.Second
	samplingInitial    = 100
	samplingThereafter = 100
)

// Option changes what New builds.
type Option func(*options)

type options struct {
	out  zapcore.WriteSyncer
	hook func(zapcore.Entry, zapcore.SamplingDecision)
}

// WithOutput sends the log to w instead of stderr (tests, mostly).
func WithOutput(w io.Writer) Option {
	return func(o *options) { o.out = zapcore.AddSync(w) }
}

// WithSamplerHook calls hook for every sampling decision, so main can count dropped entries
// (decision&zapcore.LogDropped != 0) in a metric. hook must be cheap and safe for concurrent
// use.
func WithSamplerHook(hook func(zapcore.Entry, zapcore.SamplingDecision)) Option {
	return func(o *options) { o.hook = hook }
}

// New returns the daemon's logger writing to stderr, sampled per message, and the level that
// controls it (SIGHUP changes it with SetLevel). level is debug, info, warn or error; format is
// json (the default, also for "": one object a line with ts, level, logger, msg, caller and fields, for log
// shippers) or console (tab-separated, for people at a terminal). Stack traces are only added
// from DPanic up: an error log in a daemon is an event, not a bug.
func New(level, format string, opts ...Option) (*zap.Logger, zap.AtomicLevel, error) {
	o := options{out: zapcore.Lock(os.Stderr)}
	for _, opt := range opts {
		opt(&o)
	}
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, zap.AtomicLevel{}, err
	}
	atom := zap.NewAtomicLevelAt(lvl)

	var enc zapcore.Encoder
	switch format {
	case "json", "":
		ec := zap.NewProductionEncoderConfig()
		ec.TimeKey = "ts"
		ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
		ec.EncodeDuration = zapcore.StringDurationEncoder
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, zap.AtomicLevel{}, fmt.Errorf("log format %q is not json or console", format)
	}

	var samplerOpts []zapcore.SamplerOption
	if o.hook != nil {
		samplerOpts = append(samplerOpts, zapcore.SamplerHook(o.hook))
	}
	core := zapcore.NewSamplerWithOptions(zapcore.NewCore(enc, o.out, atom),
		samplingTick, samplingInitial, samplingThereafter, samplerOpts...)
	log := zap.New(core,
		zap.AddCaller(),
		zap.AddStacktrace(zapcore.DPanicLevel),
		zap.ErrorOutput(zapcore.Lock(os.Stderr)))
	return log, atom, nil
}

// ParseLevel parses debug, info, warn or error (the --log-level values).
func ParseLevel(s string) (zapcore.Level, error) {
	switch s {
	case "debug":
		return zapcore.DebugLevel, nil
	case "info", "":
		return zapcore.InfoLevel, nil
	case "warn":
		return zapcore.WarnLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	return zapcore.InfoLevel, fmt.Errorf("log level %q is not debug, info, warn or error", s)
}
