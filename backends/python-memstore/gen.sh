#!/bin/sh
# Regenerates the committed Python code in gen/ from the .proto files with
# Debian's protoc and grpc_python_plugin (apt-get install protobuf-compiler
# protobuf-compiler-grpc grpc-proto). Usage: gen.sh [OUTDIR] (default: gen/
# next to this script). `go test ./backends/python-memstore/` fails when the
# committed code is stale.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/gen}
health=${PRISM_HEALTH_PROTO_DIR:-/usr/share/grpc-proto/grpc/health/v1}
plugin=$(command -v grpc_python_plugin)
mkdir -p "$out"
cd "$root/proto"
protoc -I . --python_out="$out" --grpc_python_out="$out" --plugin=protoc-gen-grpc_python="$plugin" \
	prism/lifecycle/v1/lifecycle.proto prism/keyvalue/v1/keyvalue.proto prism/pubsub/v1/pubsub.proto
# The standard health service, generated as top-level modules (health_pb2):
# its proto package grpc.health.v1 would otherwise shadow grpcio's own "grpc".
cd "$health"
protoc -I . --python_out="$out" --grpc_python_out="$out" --plugin=protoc-gen-grpc_python="$plugin" health.proto
