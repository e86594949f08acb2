#!/usr/bin/env bash
# `make run` from a fresh clone to an answer in the browser (issue 12): a timed `make install` in a
# new clone of this repository (pip's cache is kept, as on a developer's second install), then
# benchmarks/first_answer.py against that clone. Results in benchmarks/results/latest/fresh_clone.json.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
clone="$(mktemp -d /tmp/chatbot-fresh-XXXX)"
git clone --quiet "$here" "$clone"
start=$(date +%s.%N)
make -C "$clone" install >/tmp/fresh_clone_install.log 2>&1
install_s=$(echo "$(date +%s.%N) - $start" | bc)
echo "make install: ${install_s}s"
"$here/.venv/bin/python" "$here/benchmarks/first_answer.py" --checkout "$clone" \
    --out "$clone/first_answer.json"
"$here/.venv/bin/python" - "$clone/first_answer.json" "$install_s" \
    "$here/benchmarks/results/latest/fresh_clone.json" <<'EOF'
import json, sys
result = json.load(open(sys.argv[1]))
result = {"make_install_s": round(float(sys.argv[2]), 1), **result}
result["make_run_to_answer_s"] = round(result["make_install_s"] + result["start_to_answer_s"], 1)
open(sys.argv[3], "w").write(json.dumps(result, indent=2) + "\n")
print(json.dumps(result))
EOF
rm -rf "$clone"
