package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/shoes-scaleset/shoes-scaleset/internal/etcdtest"
)

// TestEtcdTLS: the --etcd-ca-file, --etcd-cert-file and --etcd-key-file
// flags reach an etcd that serves TLS and requires a client certificate:
// with all three the state is read; without the client certificate, or
// without the CA, the command fails (exit 1) naming the connection.
func TestEtcdTLS(t *testing.T) {
	clearCLIConfigEnv(t)
	srv, files := etcdtest.StartTLS(t)
	if !strings.HasPrefix(srv.Endpoint(), "https://127.0.0.1:") {
		t.Fatalf("endpoint %s, want https on loopback", srv.Endpoint())
	}
	ls := func(tlsFlags ...string) cliResult {
		args := append([]string{"scalesets", "ls", "-o", "json", "--store", "etcd", "--etcd-endpoints", srv.Endpoint(),
			"--etcd-dial-timeout", "3s"}, tlsFlags...)
		return runCLIMain(t, 30*time.Second, args...)
	}
	if res := ls("--etcd-ca-file", files.CA, "--etcd-cert-file", files.ClientCert, "--etcd-key-file", files.ClientKey); res.code != exitOK || strings.TrimSpace(res.stdout) != "[]" {
		t.Fatalf("scalesets ls over TLS with a client certificate: %s", res)
	}
	for name, flags := range map[string][]string{
		"no client certificate": {"--etcd-ca-file", files.CA},
		"no CA":                 {"--etcd-cert-file", files.ClientCert, "--etcd-key-file", files.ClientKey},
	} {
		if res := ls(flags...); res.code != exitFailure || !strings.Contains(res.stderr, "connect to etcd") {
			t.Errorf("%s: %s, want exit %d naming the connection", name, res, exitFailure)
		}
	}
}

// TestEtcdAuth: --etcd-username with SHOES_SCALESET_ETCD_PASSWORD reaches
// an etcd with authentication on; a wrong password fails (exit 1) without
// the password in the output.
func TestEtcdAuth(t *testing.T) {
	clearCLIConfigEnv(t)
	srv := etcdtest.Start(t)
	c := srv.Client()
	ctx := t.Context()
	if _, err := c.UserAdd(ctx, "root", "right-password"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	ls := func(password string) cliResult {
		t.Setenv("SHOES_SCALESET_ETCD_PASSWORD", password)
		return runCLIMain(t, 30*time.Second, "scalesets", "ls", "-o", "json", "--store", "etcd",
			"--etcd-endpoints", srv.Endpoint(), "--etcd-username", "root", "--etcd-dial-timeout", "3s")
	}
	if res := ls("right-password"); res.code != exitOK || strings.TrimSpace(res.stdout) != "[]" {
		t.Fatalf("scalesets ls with the right password: %s", res)
	}
	res := ls("wrong-password")
	if res.code != exitFailure {
		t.Errorf("wrong password: %s, want exit %d", res, exitFailure)
	}
	if strings.Contains(res.stdout+res.stderr, "wrong-password") {
		t.Errorf("the password is in the output:\n%s", res)
	}
}
