// Package breakereval measures sony/gobreaker/v2's TwoStepCircuitBreaker against the
// gateway's own breaker package, side by side. It is how the breaker package's decision
// not to build on gobreaker was made (see docs/architecture.md), and it stays so the
// measurement can be repeated when gobreaker changes:
//
//	cd tools/breakereval && go test -run '^$' -bench . -benchmem
//
// It is a separate module so that the gateway's go.mod holds only what the product uses.
package breakereval
