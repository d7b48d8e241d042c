#!/usr/bin/env bash
# Builds, on this host and without pulling anything, every image that
# docker-compose.yml names, so that `docker-compose up --no-build` finds them:
#
#   infinityxone/gateway:local   the Dockerfile's own gateway and echo stages, on a
#   infinityxone/echo:local      substitute base (below) instead of golang + alpine
#   hashicorp/consul:1.14.11     consul v1.14.11 (tools/consul) built with CGO_ENABLED=0
#   redis:7.4-alpine             Debian's redis-server and redis-cli
#   haproxy:2.8-alpine           Debian's haproxy (2.6)
#
# The compose smoke test (make compose-test) runs it, on a machine that reaches no
# image registry. Users build with the Dockerfile (docker compose up --build) and pull
# the official consul, redis and haproxy images; these stand-ins keep what compose
# relies on from those images (entrypoint and arguments, config paths, a busybox
# with sh and wget for the health checks, the non-root user of our own images) and
# nothing else. Each image is FROM scratch: static binaries (the gateway, echo,
# consul, Debian's busybox-static), or a Debian binary copied with the shared
# libraries that ldd names and the dynamic loader.
#
# Environment:
#   PODMAN          the engine command (default podman; the test passes its own
#                   --root/--runroot through CONTAINERS_CONF/CONTAINERS_STORAGE_CONF)
#   GATEWAY_TOOLS   where the static consul is cached (default ~/.cache/gateway-tools)
#   VERSION         the gateway's version stamp (default compose-test)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools_dir=${GATEWAY_TOOLS:-$HOME/.cache/gateway-tools}
version=${VERSION:-compose-test}
read -r -a podman <<<"${PODMAN:-podman}"

say() { echo "compose-images: $*" >&2; }
die() {
	say "$*"
	exit 1
}

for cmd in go ldd busybox wget dash redis-server redis-cli haproxy "${podman[0]}"; do
	command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found: run scripts/install-tools.sh"
done

static() { ! ldd "$1" >/dev/null 2>&1; } # ldd fails on a static executable

ctx=$(mktemp -d "${TMPDIR:-/tmp}/compose-images.XXXXXX")
trap 'rm -rf "$ctx"' EXIT

# copy_dynamic DIR BIN...: copies each binary (and the file a symlink points to)
# into DIR at the same path, with every library ldd names and the loader.
copy_dynamic() {
	local dir=$1 bin lib real
	shift
	for bin in "$@"; do
		mkdir -p "$dir$(dirname "$bin")"
		if [ -L "$bin" ]; then
			real=$(readlink -f "$bin")
			mkdir -p "$dir$(dirname "$real")"
			cp "$real" "$dir$real"
			ln -sf "$real" "$dir$bin"
		else
			cp "$bin" "$dir$bin"
		fi
		for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
			mkdir -p "$dir$(dirname "$lib")"
			cp -L "$lib" "$dir$lib"
		done
	done
}

# --- base: what entrypoints and health checks run ------------------------------------
# Debian's static busybox for grep, hostname, awk and the like; GNU wget for the
# health checks and dash for sh, because that busybox crashes on `wget -T` (the
# timeout the checks use) and its sh runs its own wget whatever PATH says.
busybox=$(command -v busybox)
static "$busybox" || die "$busybox is not static: install Debian's busybox-static"
wget=$(readlink -f "$(command -v wget)")
dash=$(readlink -f "$(command -v dash)")
# base DIR: a root filesystem with busybox (and its applets as symlinks), wget,
# dash as /bin/sh, /tmp.
base() {
	mkdir -p "$1/bin" "$1/tmp" "$1/etc"
	chmod 1777 "$1/tmp"
	cp "$busybox" "$1/bin/busybox"
	local applet
	for applet in grep hostname awk cat ls ps kill sleep nslookup; do
		ln -s busybox "$1/bin/$applet"
	done
	copy_dynamic "$1" "$wget" "$dash"
	[ "$wget" = /bin/wget ] || ln -s "$wget" "$1/bin/wget"
	ln -s "$dash" "$1/bin/sh"
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$1/etc/passwd"
	printf 'root:x:0:\n' >"$1/etc/group"
	printf 'hosts: files dns\n' >"$1/etc/nsswitch.conf"
}

build() { # build TAG DIR [ARGS...]
	local tag=$1 dir=$2
	shift 2
	say "building $tag"
	"${podman[@]}" build --quiet --format docker --no-cache "$@" -t "$tag" "$dir" >/dev/null
}

# --- gateway and echo: the Dockerfile's final stages on a substitute base -----------
# The Dockerfile's build stage (golang image) becomes binaries built here with the
# same flags; its runtime stage (alpine + ca-certificates + user 10001) becomes
# busybox, CA certificates and the same user. Everything from `FROM runtime AS echo`
# on is the Dockerfile itself.
app=$ctx/app
mkdir -p "$app/out"
say "go build gateway, echo (static)"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" \
	-o "$app/out/" ./cmd/gateway ./examples/services/echo)
base "$app/runtime"
mkdir -p "$app/runtime/usr/local/bin" "$app/runtime/etc/ssl/certs"
printf 'app:x:10001:10001::/nonexistent:/sbin/nologin\n' >>"$app/runtime/etc/passwd"
printf 'app:x:10001:\n' >>"$app/runtime/etc/group"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
	cp /etc/ssl/certs/ca-certificates.crt "$app/runtime/etc/ssl/certs/"
fi
mkdir -p "$app/deploy"
cp "$root"/deploy/docker-entrypoint.sh "$root"/deploy/gateway.hcl "$app/deploy/"
stages=$(awk '/^FROM runtime AS /{ on = 1 } on' "$root/Dockerfile")
[ -n "$stages" ] || die "Dockerfile has no 'FROM runtime AS ...' stage"
{
	printf 'FROM scratch AS build\nCOPY out/ /out/\n\n'
	printf 'FROM scratch AS runtime\nCOPY runtime/ /\nUSER 10001:10001\n\n'
	printf '%s\n' "$stages"
} >"$app/Containerfile"
build docker.io/infinityxone/gateway:local "$app" --target gateway -f "$app/Containerfile"
build docker.io/infinityxone/echo:local "$app" --target echo -f "$app/Containerfile"

# --- consul: static, from tools/consul ----------------------------------------------
want=$(grep -oE 'github.com/hashicorp/consul v[^ ]+' "$root/tools/consul/go.mod" | head -n1 | cut -d' ' -f2)
consul=
for c in "$tools_dir/consul" "$tools_dir/consul-static"; do
	if [ -x "$c" ] && static "$c" && [ "$("$c" version 2>/dev/null | head -n1 | cut -d' ' -f2)" = "$want" ]; then
		consul=$c
		break
	fi
done
if [ -z "$consul" ]; then
	consul=$tools_dir/consul-static
	say "building consul $want with CGO_ENABLED=0 into $consul (a few minutes, once)"
	mkdir -p "$tools_dir"
	(cd "$root/tools/consul" && GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 \
		go build -trimpath -ldflags "-s -w" -o "$consul.tmp" github.com/hashicorp/consul)
	mv "$consul.tmp" "$consul"
fi
c=$ctx/consul
base "$c/rootfs"
mkdir -p "$c/rootfs/consul/data" "$c/rootfs/consul/config"
cp "$consul" "$c/rootfs/bin/consul"
cat >"$c/Containerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
EXPOSE 8300 8301 8301/udp 8302 8302/udp 8500 8600 8600/udp
ENTRYPOINT ["/bin/consul"]
CMD ["agent", "-dev", "-client", "0.0.0.0"]
EOF
build "docker.io/hashicorp/consul:${want#v}" "$c"

# --- redis: Debian's binaries -------------------------------------------------------
r=$ctx/redis
base "$r/rootfs"
mkdir -p "$r/rootfs/data"
copy_dynamic "$r/rootfs" "$(command -v redis-server)" "$(command -v redis-cli)"
cat >"$r/Containerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENV PATH=$(dirname "$(command -v redis-server)"):/bin
WORKDIR /data
EXPOSE 6379
CMD ["redis-server"]
EOF
build docker.io/library/redis:7.4-alpine "$r"

# --- haproxy: Debian's binary, laid out like the official image ---------------------
h=$ctx/haproxy
base "$h/rootfs"
mkdir -p "$h/rootfs/usr/local/etc/haproxy" "$h/rootfs/var/lib/haproxy"
copy_dynamic "$h/rootfs" "$(command -v haproxy)"
cat >"$h/Containerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENV PATH=$(dirname "$(command -v haproxy)"):/bin
STOPSIGNAL SIGUSR1
ENTRYPOINT ["$(command -v haproxy)", "-W", "-db"]
CMD ["-f", "/usr/local/etc/haproxy/haproxy.cfg"]
EOF
build docker.io/library/haproxy:2.8-alpine "$h"

say "done"
