#!/usr/bin/env bash
# LJ13 / LJ55 Boltzmann generators at the published model size on a GPU (wgpu over the NVIDIA Vulkan
# driver), no Rust toolchain or network needed there: the binary is built here and travels.
#
# Here (with the toolchain):
#   cargo build --release --features wgpu --bin physflow
#   mkdir -p .gpu && cp target/release/physflow .gpu/ && strip .gpu/physflow && xz -f .gpu/physflow
#   (cd .gpu && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
# There:
#   bash benches/gpu/bg_particles.sh lj13|lj55 [OUT]   → OUT/bg_SYSTEM/{bg_SYSTEM.png, bg_SYSTEM_report.{md,json}, …}
#
# Settings: benches/gpu/bg_SYSTEM.toml.
#
# The reference MALA run is written to OUT/SYSTEM_reference.h5 and reused by later runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${PHYSFLOW_BIN:-.gpu/physflow}
if [ ! -x "$bin" ] && [ -f "$bin.xz" ]; then xz -dkf "$bin.xz" && chmod +x "$bin"; fi
sys=${1:?usage: bg_particles.sh lj13|lj55 [OUT]}
case "$sys" in lj13|lj55) ;; *) echo "unknown system '$sys' (lj13, lj55)" >&2; exit 2 ;; esac
out=${2:-benches/gpu/out}
mkdir -p "$out"
source benches/gpu/vulkan_env.sh
cfg="$out/bg_$sys.toml"
# A top-level key, so before the file's tables.
{ echo "reference_file = \"$out/${sys}_reference.h5\""; cat "benches/gpu/bg_$sys.toml"; } >"$cfg"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$out/gpu.txt" 2>/dev/null || true
"$bin" --device wgpu --out "$out" bg particles --system "$sys" --config "$cfg"
