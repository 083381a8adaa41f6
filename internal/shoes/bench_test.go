package shoes

import (
	"context"
	"testing"

	shoespb "github.com/shoes-scaleset/shoes-scaleset/proto"
)

// BenchmarkAddInstancePool measures one AddInstance through the pool, whose
// processes are reused across calls.
func BenchmarkAddInstancePool(b *testing.B) {
	f := newFixture(b, nil, nil)
	ctx := context.Background()
	req := addReq()
	// Start the first process outside the measurement.
	if _, err := f.host.AddInstance(ctx, req); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := f.host.AddInstance(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAddInstanceProcessPerCall measures what myshoes does: start a
// plugin process for the call and kill it afterwards.
func BenchmarkAddInstanceProcessPerCall(b *testing.B) {
	f := newFixture(b, nil, nil)
	ctx := context.Background()
	req := addReq()
	preq := &shoespb.AddInstanceRequest{
		RunnerName:   req.RunnerName,
		SetupScript:  req.SetupScript,
		ResourceType: req.ResourceType.toProto(),
		Labels:       req.Labels,
	}
	for b.Loop() {
		p, err := f.host.launch.start(ctx)
		if err != nil {
			b.Fatal(err)
		}
		_, err = p.shoes.AddInstance(ctx, preq)
		p.kill(false)
		if err != nil {
			b.Fatal(err)
		}
	}
}
