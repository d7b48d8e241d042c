// Package composetest runs docker-compose.yml for real: Debian's docker-compose (1.29)
// against a podman system service on a private unix socket, with images built on
// this host (scripts/compose-images.sh), and checks the deployment through the
// HAProxy port it publishes on 127.0.0.1: routing, JWT, the shared Redis rate limit,
// scaling, a replica stopped under load, and `docker-compose down -v`.
//
// The test is behind the build tag composetest, so `go test ./...` leaves it out;
// `make compose-test` runs it (and `make test` runs that after the unit tests):
//
//	go test -tags composetest -count=1 -v ./deploy/composetest
//
// It needs podman, docker-compose, busybox-static, redis-server and haproxy
// (scripts/install-tools.sh installs them) and root. Everything it starts — the
// podman service, containers, networks — lives under one private directory and is
// stopped and removed when the test ends, whether it passed or not.
package composetest
