package gateway

import (
	"io"

	"github.com/hashicorp/go-hclog"
	"github.com/mattn/go-isatty"

	"github.com/infinityxone/gateway/gateway/config"
)

// NewAppLogger builds the application log (hclog) that the log block describes:
// app_format "text" (the default) or "json" (one JSON object a line, with hclog's
// "@timestamp", "@level", "@module" and "@message" keys), at the block's level, on out.
// Text is coloured only when out is a terminal, so a file, a pipe or a log collector
// never receives ANSI escape codes.
func NewAppLogger(lc config.Log, out io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "gateway",
		Level:      hclog.LevelFromString(lc.Level),
		Output:     out,
		JSONFormat: lc.AppFormat == "json",
		Color:      colorFor(out, lc.AppFormat),
	})
}

// colorFor decides colouring up front instead of leaving it to hclog's AutoColor, which
// keeps colour on for any writer that is not a file.
func colorFor(out io.Writer, format string) hclog.ColorOption {
	if format == "json" {
		return hclog.ColorOff
	}
	f, ok := out.(interface{ Fd() uintptr })
	if !ok || !isatty.IsTerminal(f.Fd()) {
		return hclog.ColorOff
	}
	return hclog.AutoColor
}
