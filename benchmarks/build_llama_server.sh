#!/usr/bin/env bash
# Build llama.cpp's C++ `llama-server` once, from the llama.cpp sources carried by the
# llama-cpp-python sdist (vendor/llama.cpp), and cache the binary outside the repository.
#
#   benchmarks/build_llama_server.sh            # prints the cached binary's path
#
# ~8 minutes on 2 cores; a second run reuses the cache. Not part of `make test`.
# Flags: the default native build crashes at the first decode on these machines, so the
# instruction sets are named explicitly (see ../shared/DESIGN.md).
set -euo pipefail

CACHE="${CHATBOT_LLAMA_SERVER_CACHE:-$HOME/.cache/chatbot/llama-server}"
BIN="$CACHE/llama-server"
if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi

HERE="$(cd "$(dirname "$0")" && pwd)"
PY="${PYTHON:-$HERE/../.venv/bin/python}"
[[ -x "$PY" ]] || PY=python3
VERSION="${LLAMA_CPP_PYTHON_VERSION:-$("$PY" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))' 2>/dev/null || true)}"
SPEC="llama-cpp-python${VERSION:+==$VERSION}"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "downloading the $SPEC sdist into $WORK" >&2
# --no-binary for this package only: with :all:, pip also builds its build requirements
# (scikit-build-core, cmake, ...) from source just to read the metadata.
"$PY" -m pip download --quiet --no-deps --no-binary llama-cpp-python -d "$WORK" "$SPEC" >&2
tar -xzf "$WORK"/llama_cpp_python-*.tar.gz -C "$WORK"
SRC="$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)"
[[ -f "$SRC/CMakeLists.txt" ]] || { echo "no vendor/llama.cpp in the sdist" >&2; exit 1; }

echo "building llama-server in $SRC (about 8 minutes on 2 cores)" >&2
cd "$SRC"
nice -n 10 cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX2=ON \
  -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF >&2
nice -n 10 cmake --build build --target llama-server -j2 >&2

mkdir -p "$CACHE"
cp build/bin/llama-server "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
echo "$BIN"
