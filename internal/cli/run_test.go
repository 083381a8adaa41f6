package cli

import (
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
)

// TestRuntimeTuning: run lowers GOGC to defaultGCPercent, and the fake
// plugin's process runs with one P, unless the environment sets the
// variable, which the Go runtime has applied already.
func TestRuntimeTuning(t *testing.T) {
	for _, knob := range []struct {
		env   string
		tune  func(lookupEnvFunc)
		set   func(int) int // sets the setting, returns the one before
		other int           // a value the tuning does not set
		want  int
	}{
		{"GOGC", tuneGC, debug.SetGCPercent, 100, defaultGCPercent},
		{"GOMAXPROCS", oneProc, runtime.GOMAXPROCS, 3, 1},
	} {
		t.Run(knob.env, func(t *testing.T) {
			restore := knob.set(knob.other)
			t.Cleanup(func() { knob.set(restore) })
			for _, tc := range []struct {
				name string
				env  map[string]string
				want int
			}{
				{knob.env + " unset", nil, knob.want},
				{knob.env + " set", map[string]string{knob.env: strconv.Itoa(knob.other)}, knob.other},
			} {
				t.Run(tc.name, func(t *testing.T) {
					knob.set(knob.other)
					knob.tune(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
					if got := knob.set(knob.other); got != tc.want {
						t.Errorf("%s %d, want %d", knob.env, got, tc.want)
					}
				})
			}
		})
	}
}
