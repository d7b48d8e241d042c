#!/bin/sh
# Entry point of the gateway image: runs `gateway "$@"` (CMD is "run").
#
# When GATEWAY_ADVERTISE_ADDR is unset it is set to this container's IP address, so
# that a replica registering itself in Consul (consul { register { address =
# env("GATEWAY_ADVERTISE_ADDR", "") } }, as deploy/gateway.hcl does) registers an
# address that the Consul agent can check and other containers can reach, and each
# replica gets its own service ID.
set -eu
if [ -z "${GATEWAY_ADVERTISE_ADDR:-}" ]; then
	GATEWAY_ADVERTISE_ADDR=$(hostname -i 2>/dev/null | awk '{ print $1 }') || GATEWAY_ADVERTISE_ADDR=
	export GATEWAY_ADVERTISE_ADDR
fi
exec /usr/local/bin/gateway "$@"
