//go:build !race

package hub

// raceEnabled is true in builds with the race detector.
const raceEnabled = false
