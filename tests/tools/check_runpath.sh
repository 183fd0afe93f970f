#!/usr/bin/env bash
# Every program the build makes looks for libraries only beside itself ($ORIGIN/../lib) and in
# the system's paths: a build-tree or other absolute directory in RUNPATH is a place someone
# could plant a library that the program would load.
set -euo pipefail
bin_dir=$1
checked=0
for f in "$bin_dir"/*; do
  [[ -f $f && -x $f ]] || continue
  readelf -h "$f" >/dev/null 2>&1 || continue
  runpath=$(readelf -d "$f" | sed -n 's/.*(\(RUNPATH\|RPATH\)).*\[\(.*\)\]/\2/p')
  if [[ -n $runpath && $runpath != "\$ORIGIN/../lib" ]]; then
    echo "$f: RUNPATH $runpath (only \$ORIGIN/../lib is allowed)" >&2
    exit 1
  fi
  checked=$((checked + 1))
done
((checked > 0)) || { echo "no programs in $bin_dir" >&2; exit 1; }
echo "$checked programs: RUNPATH \$ORIGIN/../lib or none"
