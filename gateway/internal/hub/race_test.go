//go:build race

package hub

// raceEnabled is true in builds with the race detector, which limits a process to 8128
// live goroutines: the storm test then runs fewer agents.
const raceEnabled = true
