package proc

import (
	"bytes"
	"io"
	"os"
)

// logSince returns what was written to the log from offset on (nil without a log).
func (p *Process) logSince(offset int64) []byte {
	if p.LogPath == "" {
		return nil
	}
	f, err := os.Open(p.LogPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(f)
	return b
}

// tailOf returns the last max bytes of b, marked as cut when it is longer.
func tailOf(b []byte, max int) string {
	if len(b) > max {
		return "…(earlier lines cut)\n" + string(b[len(b)-max:])
	}
	return string(b)
}

// bindFailed reports whether a log says that the process could not bind a port.
func bindFailed(log []byte) bool {
	return bytes.Contains(bytes.ToLower(log), []byte("address already in use"))
}
