package main

import (
	"crypto/x509"
	"os"
	"os/exec"
	"testing"
)

// TestFallbackRoots: on a system without CA certificates (the container
// image is FROM scratch), the binary still has roots to verify GitHub's
// certificate with: the fallback bundle it carries. The check runs in a
// child process, since a process loads its system roots once.
func TestFallbackRoots(t *testing.T) {
	if os.Getenv("SHOES_SCALESET_TEST_ROOTS_CHILD") == "1" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			t.Fatalf("SystemCertPool: %v", err)
		}
		if pool.Equal(x509.NewCertPool()) {
			t.Fatal("no CA roots without the system's: the fallback bundle is missing")
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFallbackRoots$", "-test.v")
	cmd.Env = append(os.Environ(), "SHOES_SCALESET_TEST_ROOTS_CHILD=1",
		"SSL_CERT_FILE=/nonexistent/ca.pem", "SSL_CERT_DIR=/nonexistent")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child without system roots: %v\n%s", err, out)
	}
}
