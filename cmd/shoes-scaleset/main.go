// Command shoes-scaleset runs GitHub Actions runner scale sets for myshoes users.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	// CA roots for a system that has none, such as the container image
	// built FROM scratch; the system's own roots are used where they exist.
	_ "golang.org/x/crypto/x509roots/fallback"

	"github.com/shoes-scaleset/shoes-scaleset/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, stop, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
