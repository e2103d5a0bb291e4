//go:build race

package server_test

// raceSlowdown widens latency bounds: the race detector slows code 5–10×.
const raceSlowdown = 5
