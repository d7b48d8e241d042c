#!/usr/bin/env bash
# Installs what the tests need, and only what is missing (safe to run again):
#   gcc             Debian package (go test -race needs cgo)
#   redis-server    Debian package
#   redis-cli       Debian package redis-tools (creates the Redis Cluster of the tests)
#   consul          Consul v1.14.11 built (static) from the tools module tools/consul
#                   through the Go module proxy, into ${GATEWAY_TOOLS:-$HOME/.cache/gateway-tools}
#   docker-compose  Debian package (for the compose file check)
#   chromium        Debian package, without recommends (the dashboard's browser test)
#   compose test    podman, haproxy, busybox-static, wget, dash (Debian packages) and a
#                   static consul (the one above; consul-static if that one is an older
#                   cgo build): make compose-test
#
# With arguments, installs only those Debian packages instead (`make bench` runs
# `scripts/install-tools.sh wrk`).
#
# With CI=true anything still missing afterwards fails the run (exit 1); otherwise
# a missing docker-compose is only a warning.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools_dir=${GATEWAY_TOOLS:-$HOME/.cache/gateway-tools}
ci=${CI:-false}

say() { echo "install-tools: $*"; }

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
	sudo_cmd=(sudo -n) # never wait for a password
fi

apt_updated=false
# apt_install PKG...: installs Debian packages, running apt-get update once first.
apt_install() {
	if ! command -v apt-get >/dev/null 2>&1; then
		say "apt-get not found: install $* yourself"
		return 1
	fi
	if [ "$apt_updated" = false ]; then
		say "apt-get update"
		"${sudo_cmd[@]}" apt-get update -qq || return 1
		apt_updated=true
	fi
	say "apt-get install -y $*"
	"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" || return 1
}

# need_command CMD [PKG]: installs Debian package PKG (default CMD) when CMD is missing.
need_command() {
	local cmd=$1 pkg=${2:-$1}
	if command -v "$cmd" >/dev/null 2>&1; then
		say "$cmd: $(command -v "$cmd")"
		return 0
	fi
	apt_install "$pkg" && command -v "$cmd" >/dev/null 2>&1
}

if [ $# -gt 0 ]; then
	for pkg in "$@"; do
		need_command "$pkg" || { say "FAILED: $pkg could not be installed"; exit 1; }
	done
	exit 0
fi

missing=()

# go test -race needs cgo, so a C compiler.
need_command gcc || missing+=(gcc)
need_command redis-server || missing+=(redis-server)

# --- clusters: redis-cli creates the Redis Cluster of the cluster tests and of
# `make stack STACK_FLAGS=-cluster` (Debian's redis-tools, which redis-server
# depends on; checked on its own in case redis-server came from elsewhere).
need_command redis-cli redis-tools || missing+=(redis-tools)
# --- end clusters

# consul: rebuilt when absent or not the version that tools/consul/go.mod pins.
want=$(grep -oE 'github.com/hashicorp/consul v[^ ]+' "$root/tools/consul/go.mod" | head -n1 | cut -d' ' -f2)
consul_bin=$tools_dir/consul
have=$("$consul_bin" version 2>/dev/null | head -n1 | cut -d' ' -f2 || true)
if [ "$have" = "$want" ]; then
	say "consul: $consul_bin ($have)"
else
	say "consul: building $want into $consul_bin (takes a few minutes the first time)"
	mkdir -p "$tools_dir"
	start=$(date +%s)
	# CGO_ENABLED=0: a static binary, which the compose test's consul image can use
	# as it is (no second build of consul-static below).
	if (cd "$root/tools/consul" && GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 \
		go build -o "$consul_bin.tmp" github.com/hashicorp/consul); then
		mv "$consul_bin.tmp" "$consul_bin"
		say "consul: built in $(($(date +%s) - start))s: $("$consul_bin" version | head -n1)"
	else
		rm -f "$consul_bin.tmp"
		say "consul: build FAILED"
		missing+=(consul)
	fi
fi

if ! need_command docker-compose; then
	if [ "$ci" = true ]; then
		missing+=(docker-compose)
	else
		say "warning: docker-compose not installed; only the compose file check needs it"
	fi
fi

# --- chromium: the dashboard's browser test (gateway/dashboard_test.go) ---
if command -v chromium >/dev/null 2>&1; then
	say "chromium: $(command -v chromium)"
elif ! { apt_install --no-install-recommends chromium && command -v chromium >/dev/null 2>&1; }; then
	missing+=(chromium)
fi
# --- end chromium ---

# --- compose smoke test (make compose-test, docs/compose.md) -------------------------
# podman runs docker-compose.yml; scripts/compose-images.sh copies haproxy, wget, dash,
# redis-server and a static busybox into the images it builds, and needs a static
# consul: ~/.cache/gateway-tools/consul when that one is static, else consul-static.
compose_ok=true
need_command podman || compose_ok=false
need_command runc || compose_ok=false
need_command iptables || compose_ok=false # netavark's firewall rules (published ports)
for pkg in netavark aardvark-dns; do # podman's network stack
	[ -x "/usr/lib/podman/$pkg" ] || apt_install "$pkg" || compose_ok=false
done
need_command haproxy || compose_ok=false
need_command wget || compose_ok=false
need_command dash || compose_ok=false
if ! command -v busybox >/dev/null 2>&1 || ldd "$(command -v busybox)" >/dev/null 2>&1; then
	apt_install busybox-static || compose_ok=false # replaces a dynamic busybox
fi
if ! ldd "$consul_bin" >/dev/null 2>&1 && [ -x "$consul_bin" ]; then
	say "consul: $consul_bin is static (the compose images use it)"
elif [ "$("$tools_dir/consul-static" version 2>/dev/null | head -n1 | cut -d' ' -f2 || true)" = "$want" ]; then
	say "consul-static: $tools_dir/consul-static ($want)"
else
	say "consul-static: building $want with CGO_ENABLED=0 (a few minutes the first time)"
	mkdir -p "$tools_dir"
	start=$(date +%s)
	if (cd "$root/tools/consul" && GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 \
		go build -trimpath -ldflags "-s -w" -o "$tools_dir/consul-static.tmp" github.com/hashicorp/consul); then
		mv "$tools_dir/consul-static.tmp" "$tools_dir/consul-static"
		say "consul-static: built in $(($(date +%s) - start))s"
	else
		rm -f "$tools_dir/consul-static.tmp"
		compose_ok=false
	fi
fi
if [ "$compose_ok" = false ]; then
	missing+=(compose-test-tools)
fi
# --- end of the compose smoke test block ----------------------------------------------

if [ ${#missing[@]} -gt 0 ]; then
	say "missing: ${missing[*]}"
	if [ "$ci" = true ]; then
		exit 1
	fi
	say "tests that need them will fail"
fi
