//go:build race

package interop

// raceEnabled: this test binary has the race detector, so the app under
// test is built with it too.
const raceEnabled = true
