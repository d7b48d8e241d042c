// Command gateway is the Infinity X One edge gateway.
//
//	gateway run PATH            serve a config (a file, or a directory of *.hcl files)
//	gateway dev                 embedded demo config, no Consul or Redis needed
//	gateway validate PATH       check a config: exit 0, or 1 with FILE:LINE:COL diagnostics
//	gateway token -secret S -sub ID   mint an HS256 token for development
//	gateway version
//
// Every subcommand answers -h with its usage on stdout and exit 0. Exit codes: 0 success,
// 1 a config or runtime error, 2 a usage error (unknown command or flag, missing or
// stray argument). See docs/operations.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/infinityxone/gateway/gateway"
	"github.com/infinityxone/gateway/gateway/config"
	"github.com/infinityxone/gateway/jwtauth"
)

// version is set at build time with -ldflags "-X main.version=…". Unset (or "dev"),
// the version comes from the build's own information; see versionString.
var version string

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the config is invalid or the gateway failed
	exitUsage = 2 // the command line is wrong
)

// command is one subcommand: its usage text and what it runs.
type command struct {
	name     string
	args     string // what follows the name in the usage line
	synopsis string // one line for the command list
	help     string // paragraphs after the usage line
	run      func(c *cli, args []string) int
}

// commands lists the subcommands, in the order the usage shows them.
func commands() []command {
	return []command{
		{
			name: "run", args: "[options] [PATH]", synopsis: "Serve a config (file, or directory of *.hcl files)",
			help: `Serves the config at PATH until SIGTERM or SIGINT, then drains in-flight requests.
PATH is a file, or a directory whose *.hcl files are merged. It may be given as
-config PATH instead, or through GATEWAY_CONFIG. An invalid config prints
FILE:LINE:COL diagnostics and exits 1.`,
			run: (*cli).cmdRun,
		},
		{
			name: "dev", args: "[options]", synopsis: "Serve the embedded demo config with built-in backends",
			help: `Serves the embedded demo config (cmd/gateway/dev.hcl) on 127.0.0.1:8080 with
small demo backends started in-process: no Consul, no Redis. Prints curl lines and a
sample token. GATEWAY_ADDR and GATEWAY_ADMIN_ADDR move the listeners.`,
			run: (*cli).cmdDev,
		},
		{
			name: "validate", args: "[options] [PATH]", synopsis: "Check a config; FILE:LINE:COL diagnostics",
			help: `Checks the config at PATH (a file, or a directory of *.hcl files) the way run
would, without starting anything. Exits 0 when it is valid; otherwise prints one
FILE:LINE:COL: message line per problem and exits 1. PATH may be given as -config
PATH instead, or through GATEWAY_CONFIG.`,
			run: (*cli).cmdValidate,
		},
		{
			name: "token", args: "[options]", synopsis: "Mint an HS256 token for development",
			help: `Mints an HS256 JWT and prints it alone on stdout. -sub and a secret (-secret or
JWT_SECRET, at least 32 bytes) are required.`,
			run: (*cli).cmdToken,
		},
		{
			name: "version", args: "", synopsis: "Print the version",
			help: `Prints the version: the one stamped at build time (make build), or else the
module version and VCS revision Go recorded in the binary.`,
			run: (*cli).cmdVersion,
		},
	}
}

// cli carries the output streams of one invocation and the command it runs.
type cli struct {
	stdout, stderr io.Writer
	cmd            command
}

func run(args []string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		c.usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if cmd, ok := lookup(args[1]); ok {
				c.cmd = cmd
				c.commandUsage(stdout, nil)
				return exitOK
			}
			fmt.Fprintf(stderr, "gateway help: unknown command %q\n", args[1])
			return exitUsage
		}
		c.usage(stdout)
		return exitOK
	case "-version", "--version":
		return c.cmdVersion(nil)
	}
	cmd, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "gateway: unknown command %q\n\n", args[0])
		c.usage(stderr)
		return exitUsage
	}
	c.cmd = cmd
	return cmd.run(c, args[1:])
}

func lookup(name string) (command, bool) {
	for _, cmd := range commands() {
		if cmd.name == name {
			return cmd, true
		}
	}
	return command{}, false
}

// usage prints the command list.
func (c *cli) usage(w io.Writer) {
	fmt.Fprint(w, "Usage: gateway <command> [options] [args]\n\nCommands:\n")
	for _, cmd := range commands() {
		fmt.Fprintf(w, "    %-10s %s\n", cmd.name, cmd.synopsis)
	}
	fmt.Fprint(w, "\nRun \"gateway <command> -h\" for a command's options.\n")
}

// commandUsage prints one command's usage, help and options.
func (c *cli) commandUsage(w io.Writer, fs *flag.FlagSet) {
	cmd := c.cmd
	fmt.Fprintf(w, "%s\n\n", strings.TrimSpace("Usage: gateway "+cmd.name+" "+cmd.args))
	for _, line := range strings.Split(cmd.help, "\n") {
		fmt.Fprintf(w, "  %s\n", line)
	}
	if fs == nil {
		fs = c.flags(cmd.name)
		c.defineFlags(cmd.name, fs)
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprint(w, "\nOptions:\n\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// flags returns an empty flag set for a command whose errors are reported by parse.
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("gateway "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// commandFlags is every command's flag values; defineFlags fills those a command takes.
type commandFlags struct {
	config                                     *string
	secret, sub, roles, issuer, audience, path *string
	ttl                                        *time.Duration
}

func (c *cli) defineFlags(name string, fs *flag.FlagSet) commandFlags {
	var f commandFlags
	switch name {
	case "run", "validate":
		f.config = fs.String("config", "", "config file or directory of *.hcl files, instead of PATH (env GATEWAY_CONFIG)")
	case "token":
		f.secret = fs.String("secret", "", "HS256 secret, at least 32 bytes (env JWT_SECRET)")
		f.sub = fs.String("sub", "", "subject (required)")
		f.roles = fs.String("roles", "", "comma-separated roles")
		f.ttl = fs.Duration("ttl", time.Hour, "lifetime")
		f.issuer = fs.String("issuer", "", "iss claim")
		f.audience = fs.String("audience", "", "aud claim (comma-separated for several)")
	}
	return f
}

// parse parses a command's flags. done is true when the command should end with code:
// -h printed the usage (exit 0), or the command line was wrong (exit 2).
func (c *cli) parse(args []string, maxArgs int) (f commandFlags, rest []string, code int, done bool) {
	cmd := c.cmd
	fs := c.flags(cmd.name)
	f = c.defineFlags(cmd.name, fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.commandUsage(c.stdout, fs)
			return f, nil, exitOK, true
		}
		return f, nil, c.usageError(fs, err.Error()), true
	}
	if fs.NArg() > maxArgs {
		return f, nil, c.usageError(fs, fmt.Sprintf("unexpected argument %q", fs.Arg(maxArgs))), true
	}
	return f, fs.Args(), 0, false
}

// usageError prints a command-line mistake and the command's usage on stderr.
func (c *cli) usageError(fs *flag.FlagSet, msg string) int {
	cmd := c.cmd
	fmt.Fprintf(c.stderr, "gateway %s: %s\n\n", cmd.name, msg)
	c.commandUsage(c.stderr, fs)
	return exitUsage
}

// configPath is the config a run or validate names: PATH, -config PATH, or
// GATEWAY_CONFIG, in that order of preference; naming two different ones is an error.
func (c *cli) configPath(args []string) (string, int, bool) {
	f, rest, code, done := c.parse(args, 1)
	if done {
		return "", code, false
	}
	path := *f.config
	if len(rest) == 1 {
		if path != "" && path != rest[0] {
			return "", c.usageError(nil, fmt.Sprintf("two configs named: -config %s and %s", path, rest[0])), false
		}
		path = rest[0]
	}
	if path == "" {
		path = os.Getenv("GATEWAY_CONFIG")
	}
	if path == "" {
		return "", c.usageError(nil, "a config PATH (or -config PATH, or GATEWAY_CONFIG) is required"), false
	}
	return path, 0, true
}

// load reads and validates a config, printing its diagnostics.
func (c *cli) load(path string) (*config.Config, bool) {
	cfg, ds := config.Load(path)
	if len(ds) > 0 {
		for _, d := range ds {
			fmt.Fprintln(c.stderr, d.String())
		}
		return nil, false
	}
	return cfg, true
}

func (c *cli) cmdValidate(args []string) int {
	path, code, ok := c.configPath(args)
	if !ok {
		return code
	}
	cfg, ok := c.load(path)
	if !ok {
		return exitError
	}
	if errs := gateway.CheckFiles(cfg); len(errs) > 0 {
		for _, err := range errs {
			fmt.Fprintln(c.stderr, err)
		}
		return exitError
	}
	fmt.Fprintf(c.stdout, "%s: ok (%d routes, %d services)\n", path, len(cfg.Routes), len(cfg.Services))
	return exitOK
}

func (c *cli) cmdRun(args []string) int {
	path, code, ok := c.configPath(args)
	if !ok {
		return code
	}
	cfg, ok := c.load(path)
	if !ok {
		return exitError
	}
	return c.serve(cfg, path, nil)
}

// serve runs a gateway until SIGTERM or SIGINT, then drains. started, if set, runs once
// the listeners are up. With a config path, SIGHUP reloads the config from it.
func (c *cli) serve(cfg *config.Config, path string, started func(g *gateway.Gateway)) int {
	logger := gateway.NewAppLogger(cfg.Log, c.stderr)
	g, err := gateway.New(cfg, gateway.Options{Logger: logger, AccessLog: c.stdout, Version: versionString(version, readBuildInfo).Version, ConfigPath: path,
		// GATEWAY_UPSTREAM_NETHTTP=1: upstream requests through net/http's Transport only
		// (the gateway's own HTTP/1.1 pool off), for comparisons; docs/benchmarks.md.
		UpstreamNetHTTP: os.Getenv("GATEWAY_UPSTREAM_NETHTTP") == "1"})
	if err != nil {
		fmt.Fprintln(c.stderr, err)
		return exitError
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if started != nil {
		go func() {
			select {
			case <-g.Started():
				started(g)
			case <-ctx.Done():
			}
		}()
	}
	go func() {
		<-ctx.Done()
		stop() // a second SIGTERM/SIGINT during the drain ends the process at once
	}()
	if err := g.Run(ctx); err != nil {
		logger.Error("gateway stopped", "error", err)
		return exitError
	}
	return exitOK
}

// cmdToken mints an HS256 token and prints it alone on stdout.
func (c *cli) cmdToken(args []string) int {
	f, _, code, done := c.parse(args, 0)
	if done {
		return code
	}
	secret := *f.secret
	if secret == "" {
		secret = os.Getenv("JWT_SECRET")
	}
	if *f.sub == "" || secret == "" {
		return c.usageError(nil, "-sub and -secret (or JWT_SECRET) are required")
	}
	tok, err := jwtauth.Mint([]byte(secret), jwtauth.MintOptions{
		Subject: *f.sub, Roles: splitList(*f.roles), TTL: *f.ttl, Issuer: *f.issuer, Audience: splitList(*f.audience),
	})
	if err != nil {
		fmt.Fprintln(c.stderr, "gateway token:", err)
		return exitError
	}
	fmt.Fprintln(c.stdout, tok)
	return exitOK
}

func (c *cli) cmdVersion(args []string) int {
	if _, _, code, done := c.parse(args, 0); done {
		return code
	}
	v := versionString(version, readBuildInfo)
	fmt.Fprintf(c.stdout, "gateway %s\n", v.Version)
	if v.Revision != "" {
		fmt.Fprintf(c.stdout, "revision %s\n", v.Revision)
	}
	if v.GoVersion != "" {
		fmt.Fprintf(c.stdout, "built with %s\n", v.GoVersion)
	}
	return exitOK
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
