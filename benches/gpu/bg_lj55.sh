#!/usr/bin/env bash
# LJ55 Boltzmann generator at the published model size on a GPU (wgpu over the NVIDIA Vulkan
# driver), no Rust toolchain or network needed there: the binary is built here and travels.
#
# Here (with the toolchain):
#   cargo build --release --features wgpu --bin physflow
#   mkdir -p .gpu && cp target/release/physflow .gpu/ && strip .gpu/physflow && xz -f .gpu/physflow
#   (cd .gpu && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
# There:
#   bash benches/gpu/bg_lj55.sh [OUT]     → OUT/bg_lj55/{bg_lj55.png, bg_lj55_report.{md,json}, …}
#
# The reference MALA run is written to OUT/lj55_reference.h5 and reused by later runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${PHYSFLOW_BIN:-.gpu/physflow}
if [ ! -x "$bin" ] && [ -f "$bin.xz" ]; then xz -dkf "$bin.xz" && chmod +x "$bin"; fi
out=${1:-benches/gpu/out}
mkdir -p "$out"
source benches/gpu/vulkan_env.sh
cfg="$out/bg_lj55.toml"
# A top-level key, so before the file's tables.
{ echo "reference_file = \"$out/lj55_reference.h5\""; cat benches/gpu/bg_lj55.toml; } >"$cfg"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$out/gpu.txt" 2>/dev/null || true
"$bin" --device wgpu --out "$out" bg particles --system lj55 --config "$cfg"
