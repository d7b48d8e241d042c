# syntax=docker/dockerfile:1
#
# Two images from one build:
#   docker build -t infinityxone/gateway .                  the gateway (default target)
#   docker build --target echo -t infinityxone/echo .       the echo example service
# docker-compose.yml builds both.
#
# make compose-test runs docker-compose.yml with images built on the host instead
# (scripts/compose-images.sh: this file's stages from `FROM runtime AS echo` on, on a
# substitute base), because its machines reach no image registry: docs/compose.md.
#
# Static binaries (CGO_ENABLED=0) on Alpine: a shell and busybox wget for the
# HEALTHCHECK and the entrypoint: about 25 MB (gateway) and 15 MB (echo). Both run as
# an unprivileged user (uid 10001).

ARG GO_VERSION=1.26
ARG ALPINE_VERSION=3.22

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/ ./cmd/gateway ./examples/services/echo

FROM alpine:${ALPINE_VERSION} AS runtime
RUN apk add --no-cache ca-certificates \
 && addgroup -S -g 10001 app \
 && adduser -S -D -H -u 10001 -G app -s /sbin/nologin app
USER 10001:10001

# The echo example service: registers itself through the Consul agent at
# CONSUL_HTTP_ADDR, advertising the container's IP (examples/services/README.md).
FROM runtime AS echo
COPY --from=build /out/echo /usr/local/bin/echo-service
ENV ECHO_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD wget -q -T 2 -O /dev/null http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["/usr/local/bin/echo-service"]

# The gateway. Config: /etc/gateway/gateway.hcl (deploy/gateway.hcl; mount your own
# over it, or point GATEWAY_CONFIG elsewhere). The admin listener must stay on port
# 9901 for the HEALTHCHECK, or override the check.
FROM runtime AS gateway
COPY --from=build /out/gateway /usr/local/bin/gateway
COPY --chmod=0755 deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
COPY deploy/gateway.hcl /etc/gateway/gateway.hcl
ENV GATEWAY_CONFIG=/etc/gateway/gateway.hcl \
    GATEWAY_ADDR=0.0.0.0:8080 \
    GATEWAY_ADMIN_ADDR=0.0.0.0:9901
EXPOSE 8080 9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD wget -q -T 2 -O /dev/null http://127.0.0.1:9901/healthz || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["run"]
