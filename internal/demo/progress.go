package demo

import (
	"fmt"
	"io"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/actionsfake"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/scenario"
	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
)

// Progress is a snapshot of a demo run: the fake GitHub's jobs by state
// and the fake plugin's instances.
type Progress struct {
	Jobs int
	// Queued counts jobs not assigned to a scale set yet (in GHES mode:
	// also those offered and not acquired).
	Queued, Assigned, Running, Done, Canceled int
	// Up counts instances created and not deleted.
	Up, Created, Deleted int
	Elapsed              time.Duration
}

// Snapshot computes the progress of jobs queued jobs.
func Snapshot(jobs int, st actionsfake.State, calls []shoesfake.Call, elapsed time.Duration) Progress {
	p := Progress{Jobs: jobs, Elapsed: elapsed}
	for _, j := range st.Jobs {
		switch j.State {
		case "queued", "available", "acquired":
			p.Queued++
		case "assigned":
			p.Assigned++
		case "running":
			p.Running++
		case "completed":
			p.Done++
		case "canceled":
			p.Canceled++
		}
	}
	p.Created = countOK(calls, shoesfake.MethodAddInstance)
	p.Deleted = countOK(calls, shoesfake.MethodDeleteInstance)
	p.Up = len(scenario.LiveInstances(calls))
	return p
}

// Finished reports whether every job reached a final state.
func (p Progress) Finished() bool { return p.Done+p.Canceled >= p.Jobs }

// counts is the line without the elapsed time: what "changed" compares.
func (p Progress) counts() string {
	s := fmt.Sprintf("jobs %d | queued %d assigned %d running %d done %d", p.Jobs, p.Queued, p.Assigned, p.Running, p.Done)
	if p.Canceled > 0 {
		s += fmt.Sprintf(" canceled %d", p.Canceled)
	}
	return s + fmt.Sprintf(" | instances up %d created %d deleted %d", p.Up, p.Created, p.Deleted)
}

// String is the compact progress line, e.g.
// "jobs 20 | queued 3 assigned 5 running 8 done 4 | instances up 13 created 17 deleted 4 | 12.3s".
func (p Progress) String() string {
	return fmt.Sprintf("%s | %.1fs", p.counts(), p.Elapsed.Seconds())
}

// ProgressWriter draws progress lines. On a terminal it redraws one line
// in place; otherwise it prints a plain line when the counts changed. It
// writes at most once per interval either way.
type ProgressWriter struct {
	w        io.Writer
	tty      bool
	interval time.Duration

	last    string    // counts of the last plain line
	lastAt  time.Time // when the last line was written
	pending bool      // a line is drawn in place and not ended yet (tty)
}

// NewProgressWriter returns a writer for a terminal (tty) or a plain
// stream that gets a line at most every interval.
func NewProgressWriter(w io.Writer, tty bool, interval time.Duration) *ProgressWriter {
	return &ProgressWriter{w: w, tty: tty, interval: interval}
}

// Update shows p as of now: on a terminal at most once per interval, else
// when the counts changed and the interval passed since the last line.
func (pw *ProgressWriter) Update(p Progress, now time.Time) {
	if !pw.lastAt.IsZero() && now.Sub(pw.lastAt) < pw.interval {
		return
	}
	if pw.tty {
		fmt.Fprintf(pw.w, "\r%s\x1b[K", p)
		pw.pending, pw.lastAt = true, now
		return
	}
	if p.counts() != pw.last {
		pw.print(p, now)
	}
}

// Flush shows p if it differs from what was last shown, whatever the
// interval, and ends a line drawn in place.
func (pw *ProgressWriter) Flush(p Progress, now time.Time) {
	switch {
	case pw.tty:
		fmt.Fprintf(pw.w, "\r%s\x1b[K\n", p)
		pw.pending = false
	case p.counts() != pw.last:
		pw.print(p, now)
	}
}

// Println prints a message line, ending a line drawn in place first.
func (pw *ProgressWriter) Println(msg string) {
	if pw.pending {
		fmt.Fprint(pw.w, "\r\x1b[K")
		pw.pending = false
	}
	fmt.Fprintln(pw.w, msg)
}

// Status shows a transient status line (tty only), e.g. while starting.
func (pw *ProgressWriter) Status(msg string) {
	if pw.tty {
		fmt.Fprintf(pw.w, "\r%s\x1b[K", msg)
		pw.pending = true
	}
}

func (pw *ProgressWriter) print(p Progress, now time.Time) {
	fmt.Fprintln(pw.w, p)
	pw.last, pw.lastAt = p.counts(), now
}
