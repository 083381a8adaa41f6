#!/bin/sh
# Writes the shell completions the packages ship into completions/ (git-ignored):
#   completions/shoes-scaleset.bash, .zsh, .fish
# Run by goreleaser as a `before` hook, from the repository root. They come from
# cobra's `shoes-scaleset completion <shell>`, so they follow the command tree.
#
# The binary is built for this machine with goreleaser's own compile flags
# (CGO_ENABLED=0, -trimpath): on linux/amd64 the compiled packages are then
# shared with goreleaser's linux_amd64 build through the Go build cache, and
# only the link is done twice.
set -eu
cd "$(dirname "$0")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -trimpath -o "$tmp/shoes-scaleset" ./cmd/shoes-scaleset

rm -rf completions
mkdir completions
for shell in bash zsh fish; do
	"$tmp/shoes-scaleset" completion "$shell" >"completions/shoes-scaleset.$shell"
	# An empty file would be packaged without complaint; refuse it here.
	if [ ! -s "completions/shoes-scaleset.$shell" ]; then
		echo "completions.sh: \`shoes-scaleset completion $shell\` wrote nothing" >&2
		exit 1
	fi
done
