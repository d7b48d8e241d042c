// Command gateway is the Infinity X One edge gateway.
//
//	gateway run -config FILE|DIR      serve
//	gateway dev                       embedded demo config, no Consul or Redis needed
//	gateway validate -config FILE|DIR check a config: exit 0, or 1 with FILE:LINE:COL diagnostics
//	gateway token -secret S -sub ID   mint an HS256 token for development
//	gateway version
package main

import (
	"context"
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

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: gateway <command> [flags]

commands:
  run -config FILE|DIR       serve (GATEWAY_CONFIG may stand in for -config)
  dev                        serve the embedded demo config with built-in backends
  validate -config FILE|DIR  check a config; FILE:LINE:COL diagnostics, exit 1 on errors
  token -secret S -sub ID    mint an HS256 token (-roles a,b -ttl 1h -issuer I -audience A)
  version                    print the version
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "dev":
		return cmdDev(args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "token":
		return cmdToken(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "gateway %s\n", version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "gateway: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// configFlag parses -config, falling back to GATEWAY_CONFIG.
func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("GATEWAY_CONFIG"), "config file or directory of *.hcl files (env GATEWAY_CONFIG)")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gateway %s: unexpected argument %q\n", name, fs.Arg(0))
		return "", false
	}
	if *path == "" {
		fmt.Fprintf(stderr, "gateway %s: -config FILE|DIR (or GATEWAY_CONFIG) is required\n", name)
		return "", false
	}
	return *path, true
}

// load reads and validates a config, printing its diagnostics.
func load(path string, stderr io.Writer) (*config.Config, bool) {
	cfg, ds := config.Load(path)
	if len(ds) > 0 {
		for _, d := range ds {
			fmt.Fprintln(stderr, d.String())
		}
		return nil, false
	}
	return cfg, true
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("validate", args, stderr)
	if !ok {
		return 1
	}
	cfg, ok := load(path, stderr)
	if !ok {
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok (%d routes, %d services)\n", path, len(cfg.Routes), len(cfg.Services))
	return 0
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("run", args, stderr)
	if !ok {
		return 1
	}
	cfg, ok := load(path, stderr)
	if !ok {
		return 1
	}
	return serve(cfg, path, stdout, stderr, nil)
}

// serve runs a gateway until SIGTERM or SIGINT, then drains. started, if set, runs once
// the listeners are up. With a config path, SIGHUP reloads the config from it.
func serve(cfg *config.Config, path string, stdout, stderr io.Writer, started func(g *gateway.Gateway)) int {
	logger := gateway.NewAppLogger(cfg.Log, stderr)
	g, err := gateway.New(cfg, gateway.Options{Logger: logger, AccessLog: stdout, Version: version, ConfigPath: path})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
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
		return 1
	}
	return 0
}

// cmdToken mints an HS256 token and prints it alone on stdout.
func cmdToken(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("secret", os.Getenv("JWT_SECRET"), "HS256 secret, at least 32 bytes (env JWT_SECRET)")
	sub := fs.String("sub", "", "subject (required)")
	roles := fs.String("roles", "", "comma-separated roles")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	issuer := fs.String("issuer", "", "iss claim")
	audience := fs.String("audience", "", "aud claim (comma-separated for several)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *sub == "" || *secret == "" {
		fmt.Fprintln(stderr, "gateway token: -sub and -secret (or JWT_SECRET) are required")
		return 2
	}
	tok, err := jwtauth.Mint([]byte(*secret), jwtauth.MintOptions{
		Subject: *sub, Roles: splitList(*roles), TTL: *ttl, Issuer: *issuer, Audience: splitList(*audience),
	})
	if err != nil {
		fmt.Fprintln(stderr, "gateway token:", err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	return 0
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
