#!/usr/bin/env bash
# Packs, signs and installs the bundled sample models into BUILD/models, the way any model
# reaches a device: as a verified package. The signing key is local to this build tree
# (BUILD/keys/samples.key, mode 0600) and BUILD/trust.json trusts it; outpostd run from
# BUILD/bin finds that trust file beside it.
# Usage: install-samples.sh BUILD_DIR SAMPLES_DIR SOURCE_DIR
set -euo pipefail
build=$1 samples=$2 src=$3
outpost="$build/bin/outpost"
mkdir -p "$build/keys" "$build/packages"
[ -f "$build/keys/samples.key" ] || "$outpost" key generate samples --dir "$build/keys" >/dev/null
"$outpost" key trust "$build/keys/samples.pub" -o "$build/trust.json" >/dev/null
rm -rf "$build/models.new" "$build/sample-src"
mkdir -p "$build/models.new"
while read -r name file extra; do
  d="$build/sample-src/$name"
  mkdir -p "$d"
  cp "$samples/$file" "$d/model.onnx"
  [ -z "$extra" ] || cp "$samples/$extra" "$d/"
  cp "$src/models/$name/manifest.json" "$d/manifest.json"
  pkg="$build/packages/$name.opkg"
  "$outpost" pack "$d" -o "$pkg" >/dev/null
  "$outpost" sign "$pkg" --key "$build/keys/samples.key" >/dev/null
  "$outpost" install "$pkg" --repository "$build/models.new" --trust "$build/trust.json" >/dev/null
done <<'LIST'
silero_vad silero_vad_v5.onnx
melspectrogram melspectrogram.onnx
wakeword_embedding embedding_model.onnx
hey_jarvis hey_jarvis_v0.1.onnx
ppocr_det ch_PP-OCRv4_det_infer.onnx
ppocr_rec ch_PP-OCRv4_rec_infer.onnx ppocr_keys_v1.txt
LIST
rm -rf "$build/models"
mv "$build/models.new" "$build/models"
touch "$build/models/.stamp"
