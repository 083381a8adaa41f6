package controller

import (
	"context"
	"errors"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/github"
	"github.com/shoes-scaleset/shoes-scaleset/internal/myshoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/shoes"
	"github.com/shoes-scaleset/shoes-scaleset/internal/store"
)

// The controller's peers, declared as the controller uses them. Each is
// small enough for an in-memory fake (see fakes_test.go); the daemon binds
// the real ones: myshoes's client, the shoes plugin host, the bbolt store,
// and GitHub through internal/ghadapter.

// TargetSource lists the targets to serve: myshoes's REST API.
type TargetSource interface {
	ListTargets(ctx context.Context) ([]myshoes.Target, error)
}

// Plugin creates and deletes runner instances: the shoes plugin host.
type Plugin interface {
	AddInstance(ctx context.Context, req shoes.AddInstanceRequest) (shoes.Instance, error)
	DeleteInstance(ctx context.Context, cloudID string, labels []string) error
}

// GitHub is what the controller needs of GitHub across scale sets.
type GitHub interface {
	// EnsureScaleSet gets or creates the scale set of spec, with its labels.
	EnsureScaleSet(ctx context.Context, spec github.ScaleSetSpec) (github.ScaleSetResult, error)
	// DeleteScaleSet deletes a scale set; one already gone is not an error.
	DeleteScaleSet(ctx context.Context, scope string, scaleSetID int) error
	// RunnerVersion resolves "latest" (cached) or returns requested.
	RunnerVersion(ctx context.Context, scope, requested string) (string, error)
	// ScaleSet returns the calls made for one scale set (and its scope's
	// runners). It does no I/O.
	ScaleSet(scope string, scaleSetID int) ScaleSetAPI
}

// ScaleSetAPI is GitHub for one scale set: its runners and its sessions.
type ScaleSetAPI interface {
	// JIT registers a runner named name and returns its JIT config.
	JIT(ctx context.Context, name, workFolder string) (*github.JITConfig, error)
	// RemoveRunner deregisters a runner. One GitHub does not know is
	// removed already (nil); one running a job is ErrJobRunning.
	RemoveRunner(ctx context.Context, runnerID int64) error
	// RunnerByName returns the ID of the runner named name, 0 if GitHub
	// does not know it.
	RunnerByName(ctx context.Context, name string) (int64, error)
	// RunnerStatus returns what GitHub says of a runner; found is false
	// when GitHub does not know it.
	RunnerStatus(ctx context.Context, runnerID int64) (st github.RunnerStatus, found bool, err error)
	// OpenSession creates the scale set's message session; another
	// owner's session is github.ErrSessionConflict.
	OpenSession(ctx context.Context, owner string) (Session, error)
	// DeleteSession deletes a session by ID (one left by an earlier run);
	// one GitHub expired or evicted counts as deleted.
	DeleteSession(ctx context.Context, sessionID string) error
}

// ErrJobRunning: GitHub refused to remove a runner because it runs a job.
var ErrJobRunning = errors.New("the runner is running a job")

// Session is one message session of a scale set.
type Session interface {
	ID() string
	// Statistics are the scale set's statistics when the session opened.
	Statistics() *github.Statistics
	// GetMessage long-polls for the next message after lastID; nil means
	// none came within the poll hold.
	GetMessage(ctx context.Context, lastID int64, maxCapacity int) (*github.Message, error)
	// Ack deletes (acknowledges) a message.
	Ack(ctx context.Context, messageID int64) error
	// Acquire acquires runner requests (GHES) and returns those granted.
	Acquire(ctx context.Context, requestIDs []int64) ([]int64, error)
	// Close deletes the session on GitHub.
	Close(ctx context.Context) error
}

// Ownership divides the listed targets among the replicas that share them
// (issue 13). The controller serves only the targets Mine returns; a
// listed target another replica serves is not "removed": its runners,
// session and scale set are that replica's. With one replica (the default,
// on bbolt) every listed target is mine.
type Ownership interface {
	// Mine returns the targets of listed this replica serves now. An
	// error keeps what is served as it is.
	Mine(ctx context.Context, listed []myshoes.Target) ([]myshoes.Target, error)
	// Changed receives when Mine's answer may have changed (a replica
	// came or went, this one's lease is in doubt): the controller then
	// asks Mine again about the last list it read, without waiting for
	// the next sync. Nil: it never changes by itself.
	Changed() <-chan struct{}
	// Leader reports whether this replica does the chores that no
	// target's owner does: the runners and scale sets of targets no
	// longer listed. Asked at each sync.
	Leader() bool
	// HandOverGrace is how long a replica that lost a target may still be
	// acting on it; 0 with one replica. A pending or configured record
	// no provisioning of this process owns may be another replica's
	// in-flight work: it is undone only once AddTimeout plus this grace
	// has passed since it last changed, and not by a recovery at start.
	HandOverGrace() time.Duration
}

// everyTarget is the ownership of a sole replica.
type everyTarget struct{}

func (everyTarget) Mine(_ context.Context, listed []myshoes.Target) ([]myshoes.Target, error) {
	return listed, nil
}

func (everyTarget) Changed() <-chan struct{}     { return nil }
func (everyTarget) Leader() bool                 { return true }
func (everyTarget) HandOverGrace() time.Duration { return 0 }

// Store is the controller's state: runners, scale sets, sessions. Every
// fact is written here before the side effect it announces. The bbolt
// store implements it.
type Store interface {
	// OwnerID names this controller's sessions.
	OwnerID() string
	WriteHealth() store.WriteHealth

	CreateRunners(rs []store.Runner) error
	GetRunner(name string) (store.Runner, error)
	ListRunners(f store.RunnerFilter) ([]store.Runner, error)
	CountRunners() (map[int]map[store.RunnerState]int, error)
	// UpdateRunner is a read-modify-write of one record; fn may run more
	// than once. The controller changes a runner's state only through
	// its transition function (lifecycle.go), which uses it.
	UpdateRunner(name string, fn func(*store.Runner) error) (store.Runner, error)
	// UpdateRunnerAfterHandOver is UpdateRunner without the ownership
	// fence, for what only a replica that lost the target knows.
	UpdateRunnerAfterHandOver(name string, fn func(*store.Runner) error) (store.Runner, error)
	// FinishRunnerIf moves a runner to history with reason if check (nil:
	// always) accepts the record.
	FinishRunnerIf(name, reason string, check func(store.Runner) error) (store.HistoryRecord, error)

	GetScaleSet(targetID string) (store.ScaleSet, error)
	ListScaleSets() ([]store.ScaleSet, error)
	PutScaleSet(ss store.ScaleSet) error
	UpdateScaleSet(targetID string, fn func(*store.ScaleSet) error) error
	DeleteScaleSet(targetID string) error

	GetSession(scaleSetID int) (store.Session, error)
	PutSession(sess store.Session) error
	// ForgetSession drops the session ID, keeping pending acquisitions.
	ForgetSession(scaleSetID int) error
	DeleteSession(scaleSetID int) error
	ListSessions() ([]store.Session, error)
	// RecordMessage stores a handled message's ID and the runner requests
	// it leaves to acquire.
	RecordMessage(scaleSetID int, id int64, acquire []int64) error
	AcquireDone(scaleSetID int, ids []int64) error

	CloudIDs() (c store.CloudIDs, found bool, err error)
	SetCloudIDs(c store.CloudIDs) error
}

var _ Store = (*store.Store)(nil)
