#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh), then configures and builds into build/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
deps=$("$root/scripts/setup.sh" | tail -n1)
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOUTPOST_DEPS_FILE="$deps" >/dev/null
cmake --build "$root/build" --parallel "$(nproc)"
