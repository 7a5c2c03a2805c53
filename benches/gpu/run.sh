#!/usr/bin/env bash
# GPU benchmarks in one run, on a machine with an NVIDIA GPU, no Rust toolchain and no network:
# the physflow binary is built elsewhere (with `--features wgpu`) and travels with the tree.
#
# Here (with the toolchain):
#   cargo build --release --features wgpu --example bench_gpu
#   mkdir -p .gpu && cp target/release/examples/bench_gpu .gpu/ && strip .gpu/bench_gpu && xz .gpu/bench_gpu
#   (cd .gpu && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
#   # the Vulkan loader and GL vendor-neutral dispatch that NVIDIA's Vulkan ICD (libGLX_nvidia) needs
# There:
#   bash benches/gpu/run.sh [--quick]    → benches/gpu/out/{results.jsonl,table.md}
#
# physflow runs on wgpu over the NVIDIA Vulkan driver (the CUDA backend's build downloads an
# LLVM bundle, see README), and on the CPU for reference; torch runs on CUDA (and its B5 side
# needs torchdiffeq). Finishes in a few minutes with --quick.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${BENCH_GPU_BIN:-.gpu/bench_gpu}
if [ ! -x "$bin" ] && [ -f "$bin.xz" ]; then xz -dkf "$bin.xz" && chmod +x "$bin"; fi
outdir=${BENCH_GPU_OUT:-benches/gpu/out}
mkdir -p "$outdir"
source benches/gpu/vulkan_env.sh
res="$outdir/results.jsonl"
: >"$res"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$outdir/gpu.txt" 2>/dev/null || true
echo "[gpu] physflow on wgpu" >&2
"$bin" --device wgpu --json "$@" >>"$res" || echo "[gpu] physflow wgpu failed" >&2
echo "[gpu] torch on cuda" >&2
python3 benches/gpu/torch_gpu.py --device cuda "$@" >>"$res" || echo "[gpu] torch failed" >&2
echo "[gpu] physflow and torch on the CPU, one thread each (reference)" >&2
RAYON_NUM_THREADS=1 "$bin" --device cpu --json --quick >>"$res" || echo "[gpu] physflow cpu failed" >&2
OMP_NUM_THREADS=1 python3 benches/gpu/torch_gpu.py --device cpu --quick >>"$res" || echo "[gpu] torch cpu failed" >&2
python3 benches/gpu/table.py "$res" | tee "$outdir/table.md"
