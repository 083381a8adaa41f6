// Command fakeshoes is the fake shoes plugin used by tests.
//
//	fakeshoes                       serve the plugin (started by a go-plugin host)
//	fakeshoes runner --jitconfig X  run the sim runner
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/shoes-scaleset/shoes-scaleset/internal/sim/shoesfake"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "runner" {
		return runRunner(args[1:], stderr)
	}
	if len(args) > 0 {
		fmt.Fprintf(stderr, "usage: fakeshoes [runner --jitconfig CONFIG]\n")
		return 2
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "fakeshoes: %v\n", err)
		return 1
	}
	if err := shoesfake.ServeFromEnv([]string{exe, "runner"}); err != nil {
		fmt.Fprintf(stderr, "fakeshoes: %v\n", err)
		return 2
	}
	return 0
}

func runRunner(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("fakeshoes runner", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jit := fs.String("jitconfig", "", "encoded JIT runner config")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *jit == "" {
		fmt.Fprintln(stderr, "fakeshoes runner: --jitconfig is required")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	if err := shoesfake.RunRunner(ctx, *jit, logger); err != nil {
		logger.Error("runner failed", "err", err)
		return 1
	}
	logger.Info("runner finished")
	return 0
}
