#!/usr/bin/env bash
# Build llama.cpp's C++ `llama-server` once, from the llama.cpp sources carried by the
# llama-cpp-python sdist (vendor/llama.cpp), and cache the binary outside the repository.
#
#   benchmarks/build_llama_server.sh            # prints the cached binary's path
#
# ~8 minutes on 2 cores per build; a second run reuses the cache. Not part of `make test`.
# The peer at its best: first `-DGGML_NATIVE=ON` (every instruction set this CPU has, AVX-512
# included), checked by a first request on the embedded model, since that build crashed at the
# first decode on some of these machines; where it fails, the explicit AVX2 flags
# (see ../shared/DESIGN.md). The flags of the binary kept go to llama-server.flags beside it, and
# benchmarks/run_all.py reports them.
set -euo pipefail

CACHE="${CHATBOT_LLAMA_SERVER_CACHE:-$HOME/.cache/chatbot/llama-server}"
BIN="$CACHE/llama-server"
if [[ -x "$BIN" && -f "$BIN.flags" ]]; then
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

GGUF="$("$PY" -c 'from chatbot.engine.model_source import embedded_gguf_path; print(embedded_gguf_path())')"

# The first request: the server answers 8 tokens on the embedded model, or the build is not kept.
answers() {
  local port
  port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "$1" -m "$GGUF" --host 127.0.0.1 --port "$port" -t 2 -c 512 >"$WORK/check.log" 2>&1 &
  local pid=$!
  "$PY" - "$port" "$pid" <<'PY'
import json, os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 180
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("llama-server exited before it answered")
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/completion",
            data=json.dumps({"prompt": "Hello", "n_predict": 8}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.load(response)
        sys.exit(0 if body.get("content") else "an empty completion")
    except (OSError, ValueError):
        time.sleep(0.5)
sys.exit("no answer in 180 s")
PY
  local status=$?
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return $status
}

build() {  # build DIR FLAGS...
  local dir=$1
  shift
  echo "building llama-server with $* (about 8 minutes on 2 cores)" >&2
  nice -n 10 cmake -S "$SRC" -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" -DLLAMA_CURL=OFF \
    -DBUILD_SHARED_LIBS=OFF >&2
  nice -n 10 cmake --build "$dir" --target llama-server -j2 >&2
}

NATIVE=(-DGGML_NATIVE=ON)
AVX2=(-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON)
CHOSEN=()
if build "$WORK/native" "${NATIVE[@]}" && answers "$WORK/native/bin/llama-server"; then
  CHOSEN=("${NATIVE[@]}")
  OUT="$WORK/native/bin/llama-server"
else
  echo "the native build did not answer a first request ($(tail -n 3 "$WORK/check.log" 2>/dev/null | tr '\n' ' ')); building with the AVX2 flags" >&2
  build "$WORK/avx2" "${AVX2[@]}"
  answers "$WORK/avx2/bin/llama-server" || { echo "the AVX2 build does not answer either" >&2; exit 1; }
  CHOSEN=("${AVX2[@]}")
  OUT="$WORK/avx2/bin/llama-server"
fi

mkdir -p "$CACHE"
cp "$OUT" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
echo "${CHOSEN[*]}" >"$BIN.flags"
echo "kept the llama-server built with ${CHOSEN[*]}" >&2
echo "$BIN"
