#!/usr/bin/env bash
# Packs carry/ (git-ignored) so that scripts/gpu-run.sh can also run the Node-level GPU tests
# (test/gpu) on a bare GPU machine, which has no Node.js, no npm registry and no ../shared:
#   carry/node.xz              this machine's node binary
#   carry/js/                  lib/ and test/ compiled by tsc (no tsx or esbuild to carry)
#   carry/node_modules.tar.xz  the runtime packages the pipeline imports (sharp with its libvips)
#   carry/addon.tar.xz         the addon and libpia_cuda.so built here (build/Release, CUDA on, stripped)
#   carry/fixtures.tar.xz      the tiny-family models and the goldens test/gpu reads
#   carry/diffusers.tar.xz     with PIA_DIFFUSERS_GIT=<a diffusers git dir> (the search tool's fetch gives
#                              one): its src/diffusers, for bench/torch_unet_motion.py (never committed)
# Then: device run with carry ["carry"] and `bash scripts/gpu-run.sh`. The device copies the tree
# and the carried paths within 64 MiB in all; this script prints the total and fails above it.
set -euo pipefail
cd "$(dirname "$0")/.."
FIX=${PIA_FIXTURES:-../shared/fixtures}
LIMIT=$((64 * 1024 * 1024))

[ -f build/Release/pia_addon.node ] && [ -f build/Release/libpia_cuda.so ] || {
  echo "gpu-carry: build/Release lacks the addon or libpia_cuda.so: run 'npm run build:native' with nvcc on PATH" >&2
  exit 2
}
rm -rf carry
mkdir -p carry
xz -T0 -9 -c "$(command -v node)" > carry/node.xz
npx tsc -p tsconfig.json --outDir carry/js --sourceMap false --declaration false
# Only the library and what test/gpu imports travel.
rm -rf carry/js/bench carry/js/scripts carry/js/test/unit carry/js/test/parity carry/js/test/e2e
addon=$(mktemp -d)
cp build/Release/pia_addon.node build/Release/libpia_cuda.so "$addon/"
strip --strip-unneeded "$addon"/* 2>/dev/null || true
# Compressed: the kernels of two architectures are most of libpia_cuda.so, and xz takes ~3/4 off.
tar cf - -C "$addon" pia_addon.node libpia_cuda.so | xz -T0 -9 > carry/addon.tar.xz
rm -rf "$addon"

# sharp, gifenc and what they require at run time, as installed here (dependencies and the optional
# ones present on disk, e.g. sharp's @img/sharp-linux-x64 and its libvips).
mods=$(node -e '
  const { existsSync, readFileSync } = require("node:fs");
  const names = new Set();
  const visit = (n) => {
    if (names.has(n) || !existsSync("node_modules/" + n + "/package.json")) return;
    names.add(n);
    const p = JSON.parse(readFileSync("node_modules/" + n + "/package.json", "utf8"));
    for (const d of Object.keys({ ...p.dependencies, ...p.optionalDependencies })) visit(d);
  };
  ["sharp", "gifenc"].forEach(visit);
  console.log([...names].join(" "));')
echo "gpu-carry: packages: $mods"
tar cf - -C node_modules $mods | xz -T0 -6 > carry/node_modules.tar.xz

runs=$(grep -o "'tiny_[A-Za-z0-9_.]*'" test/gpu/*.test.ts | cut -d"'" -f2 | sort -u)
# models/tiny/tokenizer is the CLIP tokenizer the package ships (assets/clip-tokenizer, the same files):
# gpu-run.sh links it back instead of carrying it twice.
for f in $(ls "$FIX/models/tiny/tokenizer"); do
  cmp -s "$FIX/models/tiny/tokenizer/$f" "assets/clip-tokenizer/$f" || { echo "gpu-carry: tiny's tokenizer differs from assets/clip-tokenizer ($f)" >&2; exit 2; }
done
files=(models/tiny/model_index.json models/tiny/scheduler models/tiny/text_encoder models/tiny/unet models/tiny/vae
       models/tiny-motion-adapter golden/pipeline/input_64x64.png)
for r in $runs; do files+=("golden/pipeline/$r.json" "golden/pipeline/$r.safetensors"); done
tar cf - -C "$FIX" "${files[@]}" | xz -T0 -6 > carry/fixtures.tar.xz

if [ -n "${PIA_DIFFUSERS_GIT:-}" ]; then
  git --git-dir="$PIA_DIFFUSERS_GIT" archive HEAD src/diffusers | xz -T0 -9 > carry/diffusers.tar.xz
fi

carried=$(du -sb carry | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total=$((carried + tree))
echo "gpu-carry: carry/ $((carried / 1048576)) MiB + working tree $((tree / 1048576)) MiB = $((total / 1048576)) MiB (limit 64)"
[ "$total" -le "$LIMIT" ] || { echo "gpu-carry: over the device's 64 MiB" >&2; exit 1; }
