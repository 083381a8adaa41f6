package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/shoes-scaleset/shoes-scaleset/internal/buildinfo"
)

func newVersionCmd(io streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(io.Out, "shoes-scaleset %s (%s, %s/%s)\n", buildinfo.Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
