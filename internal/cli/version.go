package cli

import (
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/shoes-scaleset/shoes-scaleset/internal/buildinfo"
)

type versionOptions struct {
	Output string
}

// versionOutputs are the values of version --output, the default first.
func versionOutputs() []string { return []string{"text", "json"} }

func newVersionCmd(io streams) *cobra.Command {
	opts := &versionOptions{}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Long: `Print the version, the Go version and the platform on one line; with
-o json also the commit the binary was built from, when the build recorded it.
"shoes-scaleset --version" prints the same line.`,
		Example: `  shoes-scaleset version
  shoes-scaleset version -o json | jq -r .revision`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runVersion(io, opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", versionOutputs()[0], "output format: "+orList(versionOutputs()))
	completeFixed(cmd, "output", versionOutputs()...)
	return cmd
}

func runVersion(io streams, o *versionOptions) error {
	if !slices.Contains(versionOutputs(), o.Output) {
		return usageErrorf("--output: unknown output %q: want %s", o.Output, orList(versionOutputs()))
	}
	info := buildinfo.Read()
	if o.Output == "json" {
		return writeIndentedJSON(io.Out, info)
	}
	fmt.Fprintln(io.Out, versionLine(info))
	return nil
}

// versionLine is the plain version: `version` and `--version`.
func versionLine(info buildinfo.Info) string {
	return fmt.Sprintf("shoes-scaleset %s (%s, %s/%s)", info.Version, info.GoVersion, info.OS, info.Arch)
}
