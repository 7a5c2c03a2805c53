#!/usr/bin/env bash
# Create (or reuse) the Python virtual environment used by the peer
# comparisons: B5 neural ODE (torchdiffeq, diffrax), the neural-SDE
# benchmark (torchsde, diffrax), the stiff-ODE benchmarks B2-B4 (scipy,
# diffrax), the HDF5 read benchmark (h5py; also used by
# data/h5/make_fixtures.py and data/h5/check_with_h5py.py) and the
# flow-matching benchmark (torchcfm, POT, scikit-learn; see fm.py) and the
# Boltzmann-generator benchmark (normflows; see boltzmann.py).  The venv
# lives OUTSIDE the repository.
#
#   bash benches/compare/setup_venv.sh          # create / complete the venv
#   PHYSFLOW_COMPARE_VENV=/some/dir bash ...     # use another location
#
# Idempotent: packages whose pinned version is already installed are skipped.
# Only PyPI is used.  torch from PyPI pulls its CUDA runtime wheels (~4 GB);
# they are not needed on CPU but PyPI has no CPU-only torch wheel, and the
# torch import needs them to be present, so we accept the download.
# Prints the venv path as the last line of stdout.
set -euo pipefail

VENV="${PHYSFLOW_COMPARE_VENV:-$HOME/.cache/physflow-compare/venv}"
PYTHON="${PHYSFLOW_COMPARE_PYTHON:-python3}"

# Pinned versions (override with e.g. TORCH_VERSION=2.9.1).
TORCH_VERSION="${TORCH_VERSION:-2.15.0}"
TORCHDIFFEQ_VERSION="${TORCHDIFFEQ_VERSION:-0.2.5}"
JAX_VERSION="${JAX_VERSION:-0.10.2}"
DIFFRAX_VERSION="${DIFFRAX_VERSION:-0.7.2}"
EQUINOX_VERSION="${EQUINOX_VERSION:-0.13.8}"
TORCHSDE_VERSION="${TORCHSDE_VERSION:-0.2.6}"
NUMPY_VERSION="${NUMPY_VERSION:-2.4.6}"
SCIPY_VERSION="${SCIPY_VERSION:-1.17.1}"
H5PY_VERSION="${H5PY_VERSION:-3.16.0}"
TORCHCFM_VERSION="${TORCHCFM_VERSION:-1.0.7}"
POT_VERSION="${POT_VERSION:-0.9.7.post1}"
SKLEARN_VERSION="${SKLEARN_VERSION:-1.9.1}"
MATPLOTLIB_VERSION="${MATPLOTLIB_VERSION:-3.11.2}"
TORCHDYN_VERSION="${TORCHDYN_VERSION:-1.0.6}"
NORMFLOWS_VERSION="${NORMFLOWS_VERSION:-1.7.3}"

log() { echo "[setup_venv] $*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv at $VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
else
    log "reusing venv at $VENV"
fi

PY="$VENV/bin/python"

# installed_version NAME -> prints the installed version or nothing
installed_version() {
    "$PY" - "$1" <<'PYEOF' 2>/dev/null || true
import sys
from importlib import metadata
try:
    print(metadata.version(sys.argv[1]))
except metadata.PackageNotFoundError:
    pass
PYEOF
}

# ensure DIST_NAME VERSION PIP_SPEC [EXTRA_PIP_ARGS...]
ensure() {
    local name="$1" want="$2" spec="$3" have
    shift 3
    have="$(installed_version "$name")"
    if [ "$have" = "$want" ]; then
        log "$name $have already installed"
        return 0
    fi
    log "installing $spec $* (have: ${have:-none})"
    "$PY" -m pip install --disable-pip-version-check --no-input \
        "$@" "$spec"
}

ensure numpy       "$NUMPY_VERSION"       "numpy==$NUMPY_VERSION"
# scipy: the stiff benchmarks' solve_ivp BDF / Radau peer (also a torchsde and
# jax dependency, so it was already pulled in; pinned here so that the stiff
# numbers name a fixed version).
ensure scipy       "$SCIPY_VERSION"       "scipy==$SCIPY_VERSION"
ensure torch       "$TORCH_VERSION"       "torch==$TORCH_VERSION"
ensure torchdiffeq "$TORCHDIFFEQ_VERSION" "torchdiffeq==$TORCHDIFFEQ_VERSION"
ensure jax         "$JAX_VERSION"         "jax[cpu]==$JAX_VERSION"
ensure equinox     "$EQUINOX_VERSION"     "equinox==$EQUINOX_VERSION"
ensure diffrax     "$DIFFRAX_VERSION"     "diffrax==$DIFFRAX_VERSION"
# torchsde 0.2.6 (the newest on PyPI) needs numpy>=1.19, scipy>=1.5, torch>=1.6
# and trampoline>=0.1.2: with the pins above pip only adds torchsde + trampoline
# (checked with pip install --dry-run), nothing is downgraded.
ensure torchsde    "$TORCHSDE_VERSION"    "torchsde==$TORCHSDE_VERSION"
# h5py 3.16.0 (the newest on PyPI) needs only numpy>=1.21.2; its manylinux
# wheel bundles its own libhdf5 (2.0.0 for h5py 3.16.0), so nothing else is
# installed or moved (checked with pip install --dry-run).
ensure h5py        "$H5PY_VERSION"        "h5py==$H5PY_VERSION"
# Flow matching (fm.py).  torchcfm 1.0.7 declares torchdyn, matplotlib, pandas,
# absl-py, POT, scikit-learn, scipy, torchdiffeq and torch; torchdyn in turn
# declares pytorch-lightning, torchvision, torchcde, ipykernel, ipywidgets,
# ... (a plain install would add ~60 packages, torchvision among them).  What
# the code imports is much less: torchcfm.conditional_flow_matching needs
# torch, numpy and POT (`ot`); torchcfm.utils (sample_8gaussians,
# sample_moons) imports matplotlib.pyplot and torchdyn.datasets, which
# imports scipy and sklearn.neighbors (sample_moons is torchdyn's
# generate_moons, not sklearn's make_moons).  So torchcfm and torchdyn are
# installed with --no-deps and the imported packages explicitly.  POT 0.9.7
# needs numpy and scipy only; scikit-learn 1.9.1 adds joblib + threadpoolctl;
# matplotlib 3.11.2 its usual pure/binary wheels (contourpy, cycler,
# fonttools, kiwisolver, packaging, pillow, pyparsing, python-dateutil).
# Nothing above is moved (checked with pip install --dry-run).
ensure POT          "$POT_VERSION"        "POT==$POT_VERSION"
ensure scikit-learn "$SKLEARN_VERSION"    "scikit-learn==$SKLEARN_VERSION"
ensure matplotlib   "$MATPLOTLIB_VERSION" "matplotlib==$MATPLOTLIB_VERSION"
ensure torchdyn     "$TORCHDYN_VERSION"   "torchdyn==$TORCHDYN_VERSION" --no-deps
ensure torchcfm     "$TORCHCFM_VERSION"   "torchcfm==$TORCHCFM_VERSION" --no-deps
# Boltzmann generators (boltzmann.py): normflows 1.7.3 is pure Python and imports only torch
# and numpy, both pinned above; --no-deps keeps pip from touching them.
ensure normflows    "$NORMFLOWS_VERSION"  "normflows==$NORMFLOWS_VERSION" --no-deps

# Final sanity check: every package imports and numpy was not moved by a
# later install (pip may up/downgrade it to satisfy torch/jax).
"$PY" - <<'PYEOF' >&2
import importlib
import os
os.environ.setdefault("MPLBACKEND", "Agg")  # torchcfm.utils imports matplotlib.pyplot
for m in ("numpy", "scipy", "torch", "torchdiffeq", "torchsde", "jax", "jaxlib", "equinox", "diffrax", "h5py",
          "ot", "sklearn", "matplotlib", "torchdyn", "torchdyn.datasets", "torchcfm", "torchcfm.utils", "normflows"):
    mod = importlib.import_module(m)
    print(f"[setup_venv] {m} {getattr(mod, '__version__', '?')}")
PYEOF

echo "$VENV"
