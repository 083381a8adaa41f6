package demo

import (
	"strings"
	"testing"
)

// The header line says where the state is, and how to keep or read it,
// never with the password.
func TestEtcdDescribe(t *testing.T) {
	e := &Etcd{Endpoints: []string{"http://127.0.0.1:2379", "http://127.0.0.1:2380"}, Prefix: "/demo/", Username: "u", Password: "s3cret"}
	got := e.describe()
	if want := "etcd http://127.0.0.1:2379,http://127.0.0.1:2380, prefix /demo/ (deleted at exit; keep it with --etcd-prefix PREFIX)"; got != want {
		t.Errorf("describe = %q, want %q", got, want)
	}
	e.Kept = true
	got = e.describe()
	if want := "(kept: shoes-scaleset runners history --store etcd --etcd-endpoints http://127.0.0.1:2379,http://127.0.0.1:2380 --etcd-prefix /demo/)"; !strings.HasSuffix(got, want) {
		t.Errorf("describe = %q, want it to end with %q", got, want)
	}
	if strings.Contains(got, "s3cret") {
		t.Errorf("describe = %q: it shows the password", got)
	}
}
