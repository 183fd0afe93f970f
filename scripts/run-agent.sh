#!/usr/bin/env bash
# Sets up, builds and runs outpostd on its embedded defaults with the bundled sample models
# (HTTP on 127.0.0.1:8000, gRPC on 127.0.0.1:8001). Extra arguments go to outpostd.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/build.sh"
exec "$root/build/bin/outpostd" "$@"
