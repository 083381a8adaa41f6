#!/usr/bin/env bash
# Regenerates the Go code for proto/shoes.proto with the protoc-gen-go and
# protoc-gen-go-grpc versions pinned as tool directives in go.mod.
# Usage (from anywhere): bash proto/generate.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

protoc_gen_go="$(go tool -n protoc-gen-go)"
protoc_gen_go_grpc="$(go tool -n protoc-gen-go-grpc)"

protoc \
  --proto_path=proto \
  --plugin=protoc-gen-go="$protoc_gen_go" \
  --plugin=protoc-gen-go-grpc="$protoc_gen_go_grpc" \
  --go_out=proto --go_opt=paths=source_relative \
  --go-grpc_out=proto --go-grpc_opt=paths=source_relative \
  proto/shoes.proto
