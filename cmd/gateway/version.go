package main

import (
	"runtime/debug"
	"strings"
)

// buildVersion is what `gateway version` prints and what the gateway logs at start.
type buildVersion struct {
	Version   string // v1.2.3, a Go pseudo-version, or dev+REVISION
	Revision  string // VCS revision, with " (modified)" when the tree was dirty; "" unknown
	GoVersion string // the Go toolchain that built the binary; "" unknown
}

// readBuildInfo is debug.ReadBuildInfo; tests pass their own.
func readBuildInfo() (*debug.BuildInfo, bool) { return debug.ReadBuildInfo() }

// versionString chooses the version to report. A version stamped at build time
// (-ldflags "-X main.version=…", as make build and the Dockerfile do) wins. Otherwise the
// build's own information answers: the main module's version when Go recorded one (go
// install …@v1.2.3, or a VCS-derived pseudo-version), else "dev" plus the VCS revision
// (go build in a checkout), else "dev".
func versionString(stamped string, info func() (*debug.BuildInfo, bool)) buildVersion {
	v := buildVersion{Version: stamped}
	bi, ok := info()
	if ok && bi != nil {
		v.GoVersion = bi.GoVersion
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			v.Revision = rev
			if modified == "true" {
				v.Revision += " (modified)"
			}
		}
		if v.Version == "" || v.Version == "dev" {
			switch mv := bi.Main.Version; {
			case mv != "" && mv != "(devel)":
				v.Version = mv
			case rev != "":
				v.Version = "dev+" + shortRev(rev)
				if modified == "true" {
					v.Version += ".dirty"
				}
			}
		}
	}
	if v.Version == "" {
		v.Version = "dev"
	}
	return v
}

func shortRev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return strings.TrimSpace(rev)
}
