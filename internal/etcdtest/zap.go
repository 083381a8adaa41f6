package etcdtest

import "go.uber.org/zap"

// nopZap keeps the etcd client's own logging out of the test output.
func nopZap() *zap.Logger { return zap.NewNop() }
