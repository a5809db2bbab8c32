#!/usr/bin/env bash
# Install (once) ONNX Runtime for the ONNX scorer, from PyPI only (no other download):
# the onnxruntime wheel's libonnxruntime.so, plus tokenizers and numpy for the Python
# reference pipeline (scripts/onnx_reference.py, benches/onnx.sh).
#   bash scripts/setup-ort.sh          # installs; prints the library path
#   source scripts/setup-ort.sh        # ... and exports ORT_DYLIB_PATH
# sentiflow also finds the library without ORT_DYLIB_PATH: it looks in
# $SENTIFLOW_TOOLS/onnxruntime/ (default ~/.cache/sentiflow/tools), where this links it.
# The version must match the `ort` crate's C API (api-31): ONNX Runtime 1.31 or newer.
set -euo pipefail
SENTIFLOW_TOOLS=${SENTIFLOW_TOOLS:-$HOME/.cache/sentiflow/tools}
ORT_VERSION=1.31.1
PY_PKGS="onnxruntime==$ORT_VERSION tokenizers==0.23.2 numpy==2.4.6"

if [ ! -x "$SENTIFLOW_TOOLS/venv/bin/python" ]; then
  python3 -m venv "$SENTIFLOW_TOOLS/venv"
fi
if ! "$SENTIFLOW_TOOLS/venv/bin/python" -c "import onnxruntime, tokenizers, numpy, sys; sys.exit(onnxruntime.__version__ != '$ORT_VERSION')" 2>/dev/null; then
  echo "setup-ort: installing $PY_PKGS into $SENTIFLOW_TOOLS/venv" >&2
  "$SENTIFLOW_TOOLS/venv/bin/pip" install -q $PY_PKGS
fi
lib=$("$SENTIFLOW_TOOLS/venv/bin/python" -c "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi', 'libonnxruntime.so.$ORT_VERSION'))")
[ -f "$lib" ] || { echo "setup-ort: $lib missing after install" >&2; exit 1; }
mkdir -p "$SENTIFLOW_TOOLS/onnxruntime"
ln -sf "$lib" "$SENTIFLOW_TOOLS/onnxruntime/libonnxruntime.so.$ORT_VERSION"
export ORT_DYLIB_PATH="$lib"
export SENTIFLOW_PYTHON="$SENTIFLOW_TOOLS/venv/bin/python"
echo "setup-ort: ORT_DYLIB_PATH=$ORT_DYLIB_PATH" >&2
set +e +u +o pipefail
