//go:build race

package replay_test

// raceEnabled: the race detector makes each replay about ten times slower.
const raceEnabled = true
