//go:build !race

package chattest

// Race is true when this binary runs with the race detector.
const Race = false
