package demo

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = ms(100 - i) // 100ms down to 1ms: unsorted on purpose
	}
	for _, tc := range []struct {
		name   string
		values []time.Duration
		p      float64
		want   time.Duration
	}{
		{"no data", nil, 50, 0},
		{"one value p50", []time.Duration{ms(7)}, 50, ms(7)},
		{"one value p99", []time.Duration{ms(7)}, 99, ms(7)},
		{"two values p50 is the lower", []time.Duration{ms(20), ms(10)}, 50, ms(10)},
		{"two values p99 is the upper", []time.Duration{ms(20), ms(10)}, 99, ms(20)},
		{"odd count p50 is the median", []time.Duration{ms(5), ms(1), ms(3)}, 50, ms(3)},
		{"four values p50 rank 2", []time.Duration{ms(4), ms(3), ms(2), ms(1)}, 50, ms(2)},
		{"four values p75 rank 3", []time.Duration{ms(4), ms(3), ms(2), ms(1)}, 75, ms(3)},
		{"hundred p50", hundred, 50, ms(50)},
		{"hundred p99", hundred, 99, ms(99)},
		{"hundred p100", hundred, 100, ms(100)},
		{"ten p99 is the max", []time.Duration{ms(1), ms(2), ms(3), ms(4), ms(5), ms(6), ms(7), ms(8), ms(9), ms(1000)}, 99, ms(1000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := slices.Clone(tc.values)
			if got := Percentile(tc.values, tc.p); got != tc.want {
				t.Errorf("Percentile(p%v) = %v, want %v", tc.p, got, tc.want)
			}
			if !slices.Equal(before, tc.values) {
				t.Error("Percentile reordered its input")
			}
		})
	}
}

func add(name, cloudID, code string) shoesfake.Call {
	return shoesfake.Call{Method: shoesfake.MethodAddInstance, RunnerName: name, CloudID: cloudID, Code: code}
}

// addEnded is an OK AddInstance that ended at d.
func addEnded(name, cloudID string, d time.Duration) shoesfake.Call {
	c := add(name, cloudID, "OK")
	c.End = at(d)
	return c
}

func del(cloudID, code string) shoesfake.Call {
	return shoesfake.Call{Method: shoesfake.MethodDeleteInstance, CloudID: cloudID, Code: code}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func history(pendingToIdle ...time.Duration) []store.HistoryRecord {
	var out []store.HistoryRecord
	for _, d := range pendingToIdle {
		out = append(out, store.HistoryRecord{Reason: "completed", Runner: store.Runner{StateSince: map[store.RunnerState]time.Time{
			store.StatePending: at(0), store.StateConfigured: at(d / 2), store.StateIdle: at(d), store.StateBusy: at(d + time.Second),
		}}})
	}
	return out
}

func TestSummarize(t *testing.T) {
	completed := func(queued, started, done time.Duration) actionsfake.JobState {
		return actionsfake.JobState{State: "completed", QueuedAt: at(queued), StartedAt: at(started), CompletedAt: at(done)}
	}
	for _, tc := range []struct {
		name string
		in   Inputs
		want Report
		// problems are substrings expected in Problems(), in order; none means a pass.
		problems []string
	}{
		{
			name: "clean run",
			in: Inputs{
				Jobs: 3,
				State: actionsfake.State{Jobs: []actionsfake.JobState{
					completed(0, ms(800), ms(2800)),
					completed(ms(10), ms(1010), ms(3010)),
					completed(ms(20), ms(1520), ms(3520)),
				}},
				Calls: []shoesfake.Call{addEnded("r1", "c1", ms(500)), addEnded("r2", "c2", ms(1100)), addEnded("r3", "c3", ms(600)),
					del("c1", "OK"), del("c2", "OK"), del("c3", "OK")},
				History:              history(ms(600), ms(700), ms(900)),
				ProvisionConcurrency: 2,
				PluginLatency:        500 * time.Millisecond,
				PluginMode:           "inprocess",
			},
			want: Report{
				Jobs: 3, JobsCompleted: 3, InstancesCreated: 3, InstancesDeleted: 3,
				WallSeconds:    3.52,
				ProvisionP50MS: 700, ProvisionP99MS: 900,
				JobStartP50MS: 1000, JobStartP99MS: 1500,
				// The 3rd instance was up 1.1s after the first job was
				// queued; ceil(3/2) waves of 500ms take at least 1s.
				AllUpSeconds: 1.1, AllIdleSeconds: 0.9, BoundSeconds: 1, RatioToBound: 1.1,
				PluginMode: "inprocess",
			},
		},
		{
			name: "fewer instances than jobs: no all-up time",
			in: Inputs{
				Jobs:                 2,
				State:                actionsfake.State{Jobs: []actionsfake.JobState{completed(0, ms(800), ms(2800)), {State: "assigned", QueuedAt: at(ms(5))}}},
				Calls:                []shoesfake.Call{addEnded("r1", "c1", ms(500)), del("c1", "OK")},
				ProvisionConcurrency: 1,
				PluginLatency:        time.Second,
			},
			want: Report{
				Jobs: 2, JobsCompleted: 1, InstancesCreated: 1, InstancesDeleted: 1,
				WallSeconds: 2.8, JobStartP50MS: 800, JobStartP99MS: 800, BoundSeconds: 2,
			},
			problems: []string{"1 of 2 jobs completed"},
		},
		{
			name:     "no data gives zeros",
			in:       Inputs{Jobs: 2},
			want:     Report{Jobs: 2},
			problems: []string{"0 of 2 jobs completed"},
		},
		{
			name: "a job not completed, a leak, a duplicate and violations",
			in: Inputs{
				Jobs: 2,
				State: actionsfake.State{
					Jobs: []actionsfake.JobState{
						completed(0, ms(500), ms(1500)),
						{State: "assigned", QueuedAt: at(ms(5))},
					},
					Violations: []actionsfake.Violation{{Kind: actionsfake.ViolationStaleToken}, {Kind: actionsfake.ViolationStaleToken}, {Kind: actionsfake.ViolationDoubleConnect}},
				},
				Calls:   []shoesfake.Call{add("r1", "c1", "OK"), add("r1", "c2", "OK"), del("c1", "OK")},
				History: history(ms(400)),
			},
			want: Report{
				Jobs: 2, JobsCompleted: 1, InstancesCreated: 2, InstancesDeleted: 1,
				LeakedInstances: 1, DuplicateRunners: 1, ProtocolViolations: 3,
				WallSeconds:    1.5,
				ProvisionP50MS: 400, ProvisionP99MS: 400,
				JobStartP50MS: 500, JobStartP99MS: 500,
			},
			problems: []string{"1 of 2 jobs completed", "1 instances leaked", "1 runner names provisioned more than once: r1", "3 protocol violations seen by the fake GitHub: stale token, double connect"},
		},
		{
			name: "canceled jobs are reported",
			in: Inputs{
				Jobs:  1,
				State: actionsfake.State{Jobs: []actionsfake.JobState{{State: "canceled", QueuedAt: at(0)}}},
			},
			want:     Report{Jobs: 1},
			problems: []string{"0 of 1 jobs completed (1 canceled"},
		},
		{
			name: "idle runners kept for min-runners are not leaks",
			in: Inputs{
				Jobs:  1,
				State: actionsfake.State{Jobs: []actionsfake.JobState{completed(0, ms(100), ms(200))}},
				Calls: []shoesfake.Call{add("r1", "c1", "OK"), add("r2", "c2", "OK"), add("r3", "c3", "OK"), del("c1", "OK")},
				Runners: []store.Runner{
					{Name: "r2", CloudID: "c2", State: store.StateIdle, StateSince: map[store.RunnerState]time.Time{store.StatePending: at(0), store.StateIdle: at(ms(250))}},
					{Name: "r3", CloudID: "c3", State: store.StateDeleting},
				},
				History:  history(ms(150)),
				KeepIdle: true,
			},
			want: Report{
				Jobs: 1, JobsCompleted: 1, InstancesCreated: 3, InstancesDeleted: 1, LeakedInstances: 1,
				WallSeconds:    0.2,
				ProvisionP50MS: 150, ProvisionP99MS: 250, // the stored idle runner counts too
				JobStartP50MS: 100, JobStartP99MS: 100, AllIdleSeconds: 0.15,
			},
			problems: []string{"1 instances leaked (created, never deleted): c3"},
		},
		{
			name: "idle runners are leaks without min-runners",
			in: Inputs{
				Jobs:    1,
				State:   actionsfake.State{Jobs: []actionsfake.JobState{completed(0, ms(100), ms(200))}},
				Calls:   []shoesfake.Call{add("r1", "c1", "OK")},
				Runners: []store.Runner{{Name: "r1", CloudID: "c1", State: store.StateIdle}},
			},
			want: Report{
				Jobs: 1, JobsCompleted: 1, InstancesCreated: 1, LeakedInstances: 1,
				WallSeconds: 0.2, JobStartP50MS: 100, JobStartP99MS: 100,
			},
			problems: []string{"1 instances leaked"},
		},
		{
			// Its runner came online and took the job before the
			// provisioner stored the end of AddInstance.
			name: "busy before idle counts as up when busy",
			in: Inputs{
				Jobs:  1,
				State: actionsfake.State{Jobs: []actionsfake.JobState{completed(0, ms(100), ms(200))}},
				History: []store.HistoryRecord{{Reason: "completed", Runner: store.Runner{StateSince: map[store.RunnerState]time.Time{
					store.StatePending: at(0), store.StateConfigured: at(ms(20)), store.StateBusy: at(ms(120)),
				}}}},
			},
			want: Report{
				Jobs: 1, JobsCompleted: 1, WallSeconds: 0.2,
				ProvisionP50MS: 120, ProvisionP99MS: 120, JobStartP50MS: 100, JobStartP99MS: 100, AllIdleSeconds: 0.12,
			},
		},
		{
			name: "history without an idle time is skipped",
			in: Inputs{
				Jobs:  1,
				State: actionsfake.State{Jobs: []actionsfake.JobState{completed(0, ms(100), ms(200))}},
				History: append(history(ms(300)), store.HistoryRecord{Reason: "failed", Runner: store.Runner{StateSince: map[store.RunnerState]time.Time{
					store.StatePending: at(0), store.StateConfigured: at(ms(50)),
				}}}),
			},
			want: Report{
				Jobs: 1, JobsCompleted: 1, WallSeconds: 0.2,
				ProvisionP50MS: 300, ProvisionP99MS: 300, JobStartP50MS: 100, JobStartP99MS: 100, AllIdleSeconds: 0.3,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Summarize(tc.in)
			if gotJSON, wantJSON := mustJSON(t, got), mustJSON(t, tc.want); gotJSON != wantJSON {
				t.Errorf("Summarize:\n got  %s\n want %s", gotJSON, wantJSON)
			}
			problems := got.Problems()
			if len(problems) != len(tc.problems) {
				t.Fatalf("Problems = %q, want %d matching %q", problems, len(tc.problems), tc.problems)
			}
			for i, want := range tc.problems {
				if !strings.Contains(problems[i], want) {
					t.Errorf("problem %d = %q, want it to contain %q", i, problems[i], want)
				}
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReportJSONKeys(t *testing.T) {
	var m map[string]any
	if err := json.Unmarshal([]byte(mustJSON(t, Report{LogFile: "/x/controller.log"})), &m); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"jobs", "jobs_completed", "instances_created", "instances_deleted", "leaked_instances",
		"duplicate_runners", "protocol_violations", "wall_seconds", "provision_p50_ms", "provision_p99_ms",
		"job_start_p50_ms", "job_start_p99_ms", "log_file",
		"all_up_seconds", "all_idle_seconds", "bound_seconds", "ratio_to_bound", "plugin_mode",
	}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("JSON keys = %v, want %v", got, want)
	}
}

func TestReportProblemsControllerAndInterrupt(t *testing.T) {
	r := Report{Jobs: 1, JobsCompleted: 1, Interrupted: "interrupted", ControllerError: "http server: boom"}
	got := strings.Join(r.Problems(), "; ")
	for _, want := range []string{"interrupted", "controller: http server: boom"} {
		if !strings.Contains(got, want) {
			t.Errorf("Problems = %q, want %q in it", got, want)
		}
	}
}

func TestWriteText(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Report
		want []string
		deny []string // must not appear
	}{
		{
			name: "pass with a temporary state file",
			r: Report{Jobs: 4, JobsCompleted: 4, InstancesCreated: 4, InstancesDeleted: 4, WallSeconds: 3.25,
				ProvisionP50MS: 612, ProvisionP99MS: 1020, JobStartP50MS: 1300, JobStartP99MS: 2100,
				AllUpSeconds: 1.5, AllIdleSeconds: 1.51, BoundSeconds: 1, RatioToBound: 1.5, PluginMode: "script",
				LogFile: "/tmp/d/controller.log", CallLog: "/tmp/d/calls.jsonl"},
			want: []string{
				"demo passed: all 4 jobs completed, nothing leaked",
				"jobs completed       4/4",
				"instances created    4",
				"leaked instances     0",
				"duplicate runners    0",
				"protocol violations  0",
				"wall time            3.25s",
				"provision p50/p99    612ms / 1.02s",
				"job start p50/p99    1.3s / 2.1s",
				"all instances up     1.50s (first job queued to the 4-th AddInstance done; all idle in the store after 1.51s)",
				"bound                1.00s (ceil(jobs/provision concurrency) x plugin latency); ratio 1.50",
				"plugin mode          script",
				"state file           a temporary file, deleted",
				"controller log       /tmp/d/controller.log",
			},
		},
		{
			name: "failure with a kept state file",
			r:    Report{Jobs: 4, JobsCompleted: 3, StateFile: "/s/state.db"},
			want: []string{"demo FAILED: 3 of 4 jobs completed", "runners ls --state-file /s/state.db"},
		},
		{
			name: "state in etcd",
			r:    Report{Jobs: 1, JobsCompleted: 1, StateIn: "etcd http://127.0.0.1:2379, prefix /p/ (deleted at exit)"},
			want: []string{"state                etcd http://127.0.0.1:2379, prefix /p/ (deleted at exit)"},
			deny: []string{"state file"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := tc.r.WriteText(&b); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("summary lacks %q:\n%s", w, b.String())
				}
			}
			for _, d := range tc.deny {
				if strings.Contains(b.String(), d) {
					t.Errorf("summary has %q:\n%s", d, b.String())
				}
			}
		})
	}
}
