package cli

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// TestTuneGC: run lowers GOGC to defaultGCPercent unless the environment
// sets GOGC, which the Go runtime has applied already.
func TestTuneGC(t *testing.T) {
	restore := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(restore) })
	for _, tc := range []struct {
		name string
		env  map[string]string
		want int
	}{
		{"GOGC unset", nil, defaultGCPercent},
		{"GOGC set", map[string]string{"GOGC": "100"}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			tuneGC(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if got := debug.SetGCPercent(100); got != tc.want {
				t.Errorf("GOGC %d, want %d", got, tc.want)
			}
		})
	}
}

// TestOneProc: the fake plugin's process runs with one P unless the
// environment sets GOMAXPROCS, which the Go runtime has applied already.
func TestOneProc(t *testing.T) {
	restore := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(restore) })
	for _, tc := range []struct {
		name string
		env  map[string]string
		want int
	}{
		{"GOMAXPROCS unset", nil, 1},
		{"GOMAXPROCS set", map[string]string{"GOMAXPROCS": "3"}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GOMAXPROCS(3)
			oneProc(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if got := runtime.GOMAXPROCS(0); got != tc.want {
				t.Errorf("GOMAXPROCS %d, want %d", got, tc.want)
			}
		})
	}
}
