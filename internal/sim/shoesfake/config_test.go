package shoesfake

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/shoes-scaleset/shoes-scaleset/internal/testkit"
)

func TestConfigFromEnv(t *testing.T) {
	// t.Setenv: not parallel.
	tests := []struct {
		name    string
		env     map[string]string
		want    func(Config) bool
		wantErr string
	}{
		{
			name: "empty",
			env:  nil,
			want: func(c Config) bool {
				return c.FailCode == codes.OK && c.Latency == 0 && !c.NoRunner && c.CloudIDs == ""
			},
		},
		{
			name: "all knobs",
			env: map[string]string{
				EnvLatency: "250ms", EnvFailCode: "invalidargument", EnvFailRate: "0.5", EnvFailMethod: "AddInstance",
				EnvFailTimes: "3", EnvCrashOnCall: "7", EnvHang: "DeleteInstance", EnvCallLog: "/x/calls.jsonl",
				EnvStateDir: "/x/state", EnvNoRunner: "true", EnvEmptyCloudID: "1", EnvHugeIP: "true",
				EnvRunnerMode: "InProcess", EnvCloudIDs: " Name ",
			},
			want: func(c Config) bool {
				return c.Latency == 250*time.Millisecond && c.FailCode == codes.InvalidArgument && c.FailRate == 0.5 &&
					c.FailMethod == MethodAddInstance && c.FailTimes == 3 && c.CrashOnCall == 7 &&
					c.Hang == MethodDeleteInstance && c.CallLog == "/x/calls.jsonl" && c.StateDir == "/x/state" &&
					c.NoRunner && c.EmptyCloudID && c.HugeIP && c.RunnerMode == RunnerModeInProcess &&
					c.CloudIDs == CloudIDsName
			},
		},
		{
			name: "rate alone fails with Internal",
			env:  map[string]string{EnvFailRate: "1"},
			want: func(c Config) bool { return c.FailCode == codes.Internal && c.FailRate == 1 },
		},
		{name: "bad latency", env: map[string]string{EnvLatency: "soon"}, wantErr: EnvLatency},
		{name: "bad code", env: map[string]string{EnvFailCode: "Oops"}, wantErr: EnvFailCode},
		{name: "bad rate", env: map[string]string{EnvFailRate: "x"}, wantErr: EnvFailRate},
		{name: "bad times", env: map[string]string{EnvFailTimes: "x"}, wantErr: EnvFailTimes},
		{name: "bad bool", env: map[string]string{EnvNoRunner: "maybe"}, wantErr: EnvNoRunner},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{EnvLatency, EnvFailCode, EnvFailRate, EnvFailMethod, EnvFailTimes, EnvCrashOnCall,
				EnvHang, EnvCallLog, EnvStateDir, EnvNoRunner, EnvEmptyCloudID, EnvHugeIP, EnvUnknownResourceType, EnvRunnerMode, EnvCloudIDs} {
				t.Setenv(k, tt.env[k])
			}
			c, err := ConfigFromEnv()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(c) {
				t.Fatalf("unexpected config %+v", c)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	run := []string{"fakeshoes", "runner"}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"ok", Config{RunnerCommand: run}, ""},
		{"no runner needs no command", Config{NoRunner: true}, ""},
		{"runner command", Config{}, "runner command"},
		{"rate", Config{RunnerCommand: run, FailRate: 2}, "fail rate"},
		{"method", Config{RunnerCommand: run, FailMethod: "Nope"}, "fail method"},
		{"hang", Config{RunnerCommand: run, Hang: "Nope"}, "hang method"},
		{"latency", Config{RunnerCommand: run, Latency: -1}, "latency"},
		{"inprocess", Config{RunnerCommand: run, RunnerMode: RunnerModeInProcess}, ""},
		{"runner mode", Config{RunnerCommand: run, RunnerMode: "vm"}, "runner mode"},
		{"cloud IDs by name", Config{RunnerCommand: run, CloudIDs: CloudIDsName}, ""},
		{"cloud IDs opaque", Config{RunnerCommand: run, CloudIDs: CloudIDsOpaque}, ""},
		{"cloud IDs", Config{RunnerCommand: run, CloudIDs: "uuid"}, "cloud IDs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			c.defaults()
			if !testkit.WantErr(t, c.Validate(), tt.wantErr) {
				return
			}
			if c.StateDir != filepath.Join(os.TempDir(), "shoesfake") {
				t.Errorf("state dir default %q", c.StateDir)
			}
			if want := cmp.Or(tt.cfg.CloudIDs, CloudIDsOpaque); c.CloudIDs != want {
				t.Errorf("cloud IDs %q, want %q", c.CloudIDs, want)
			}
		})
	}
	c := Config{FailCode: codes.Internal, RunnerCommand: run}
	c.defaults()
	if c.FailRate != 1 {
		t.Errorf("FailRate default with a FailCode = %v, want 1", c.FailRate)
	}
}

func TestReadCallLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "calls.jsonl")
	if calls, err := ReadCallLog(p); err != nil || calls != nil {
		t.Fatalf("missing log: %v, %v", calls, err)
	}
	start := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := appendLine(p, &Call{PID: 1, Method: MethodAddInstance, Start: start, End: start, Code: "OK"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"event":"script_exit","pid":2,"cloud_id":"fake-1","exit_code":3,"stderr_tail":"x\ny"}` + "\n" + `{"pid":3,"meth`)
	f.Close()
	calls, err := ReadCallLog(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 || !calls[0].Start.Equal(start) || calls[1].Event != EventScriptExit || calls[1].ExitCode != 3 || calls[1].StderrTail != "x\ny" {
		t.Fatalf("got %+v", calls)
	}
	if err := os.WriteFile(p, []byte("not json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCallLog(p); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("malformed log: %v", err)
	}
}

func TestReadCallLogFrom(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "calls.jsonl")
	calls, off, err := ReadCallLogFrom(p, 0)
	if err != nil || calls != nil || off != 0 {
		t.Fatalf("missing log: %v, %d, %v", calls, off, err)
	}
	write := func(s string) {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = f.WriteString(s)
		f.Close()
	}
	write(`{"pid":1,"method":"AddInstance"}` + "\n" + `{"pid":2,"meth`)
	calls, off, err = ReadCallLogFrom(p, 0)
	if err != nil || len(calls) != 1 || calls[0].PID != 1 {
		t.Fatalf("first read: %+v, %v", calls, err)
	}
	// The line in progress is read once it is complete, and line 1 only once.
	write(`od":"DeleteInstance"}` + "\n")
	calls, off2, err := ReadCallLogFrom(p, off)
	if err != nil || len(calls) != 1 || calls[0].PID != 2 || calls[0].Method != MethodDeleteInstance {
		t.Fatalf("second read: %+v, %v", calls, err)
	}
	if calls, off3, err := ReadCallLogFrom(p, off2); err != nil || len(calls) != 0 || off3 != off2 {
		t.Fatalf("third read: %+v, %d, %v; want nothing new at %d", calls, off3, err, off2)
	}
}

func TestCounterAcrossOpeners(t *testing.T) {
	t.Parallel()
	c := counter{path: filepath.Join(t.TempDir(), "counter")}
	failTwice := func(st counts) bool { return st.Failed < 2 }
	var got []bool
	for i := 1; i <= 4; i++ {
		n, fail, err := c.next(failTwice)
		if err != nil {
			t.Fatal(err)
		}
		if n != i {
			t.Fatalf("call number %d, want %d", n, i)
		}
		got = append(got, fail)
	}
	if got[0] != true || got[1] != true || got[2] != false || got[3] != false {
		t.Fatalf("fail decisions %v, want the first two", got)
	}
}

func TestParseCode(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"Internal", "internal", "InvalidArgument", "NotFound", "Unavailable", "DeadlineExceeded"} {
		c, err := ParseCode(s)
		if err != nil || !strings.EqualFold(c.String(), s) {
			t.Errorf("ParseCode(%q) = %v, %v", s, c, err)
		}
	}
	if _, err := ParseCode("Nope"); err == nil {
		t.Error("ParseCode(Nope) succeeded")
	}
}

// TestScriptExitLinesDoNotInterleave: many instances' scripts ending at
// once, each with a long stderr tail, and the plugin's own lines, leave a
// call log of whole lines (CI once read two script_exit lines spliced).
func TestScriptExitLinesDoNotInterleave(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "calls.jsonl")
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		idir := filepath.Join(dir, fmt.Sprint(i))
		if err := os.MkdirAll(idir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(idir, "script.log"), []byte(strings.Repeat(fmt.Sprintf("l%d\n\"x\"\n", i), 600)), 0o644); err != nil {
			t.Fatal(err)
		}
		script := "code=0\n" + render(recordExit, "CLOUD_ID", shq(fmt.Sprint("cloud-", i)), "CALL_LOG", shq(logPath)) + "\n"
		wg.Go(func() {
			cmd := exec.Command("bash", "-c", script)
			cmd.Dir = idir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("script %d: %v\n%s", i, err, out)
			}
		})
		wg.Go(func() {
			if err := appendLine(logPath, Call{PID: i, Method: "AddInstance", CloudID: fmt.Sprint("cloud-", i)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	calls, err := ReadCallLog(logPath)
	if err != nil {
		t.Fatalf("the call log has a broken line: %v", err)
	}
	exits := 0
	for _, c := range calls {
		if c.Event == EventScriptExit && len(c.StderrTail) > 1000 {
			exits++
		}
	}
	if len(calls) != 2*n || exits != n {
		t.Fatalf("%d lines, %d script exits with their tail; want %d and %d", len(calls), exits, 2*n, n)
	}
}
