//go:build race

package ratelimit

// raceEnabled: the race detector slows every map operation ~20×; flood tests
// use fewer keys under it.
const raceEnabled = true
