#!/usr/bin/env bash
# Sets up, builds and runs every test: unit tests, the agent's integration tests over HTTP
# and gRPC, the ONNX conformance suite, a stock Node.js gRPC client, and a short run
# of the libFuzzer target over its corpus first (OUTPOST_FUZZ_SECONDS each, default 20).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/build.sh"
deps=$("$root/scripts/setup.sh" 2>/dev/null | tail -n1)

# The fuzz target: clang, libFuzzer and sanitizers, in a tree of its own.
cmake -S "$root" -B "$root/build-fuzz" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOUTPOST_DEPS_FILE="$deps" \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DOUTPOST_FUZZ=ON \
  -DOUTPOST_BUILD_TESTS=OFF -DOUTPOST_BUILD_BENCH=OFF -DOUTPOST_WITH_TORCH=OFF >/dev/null
cmake --build "$root/build-fuzz" --target http_codec_fuzz http_request_fuzz package_fuzz tuf_fuzz redaction_fuzz chat_fuzz monitoring_fuzz fleet_fuzz auth_fuzz tflite_fuzz --parallel "$(nproc)"

seconds=${OUTPOST_FUZZ_SECONDS:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in http_codec http_request package tuf redaction chat monitoring fleet auth tflite; do
  echo "fuzzing $target for ${seconds}s (new crashes land in $work/$target)"
  mkdir -p "$work/$target"
  "$root/build-fuzz/bin/${target}_fuzz" -max_total_time="$seconds" -max_len=8192 -timeout=10 \
    -artifact_prefix="$work/$target/" "$work/$target" "$root/fuzz/corpus/$target" 2>&1 | tail -n 2
done

cd "$root/build"
ctest --output-on-failure --timeout 900 -j "$(nproc)"
