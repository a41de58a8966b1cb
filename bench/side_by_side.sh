#!/usr/bin/env bash
# Runs the same benchmarks for an earlier commit and for the working tree, in
# turns, in one session (lavapipe's speed drifts between runs, so figures are
# only comparable side by side):
#
#   bench/side_by_side.sh BEFORE_REV [ROUNDS]
#
# Each round runs, for BEFORE_REV then for this tree: `deno run -A
# bench/model_bench.ts --quick`, `deno bench -A bench/moe_op_bench.ts` and
# `deno bench -A bench/ssm_op_bench.ts`. Logs go to out/side_by_side/.
set -euo pipefail
cd "$(dirname "$0")/.."
before_rev=${1:?usage: bench/side_by_side.sh BEFORE_REV [ROUNDS]}
rounds=${2:-2}
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}" NO_COLOR=1
out=out/side_by_side
mkdir -p "$out"
before=$(mktemp -d)/before
git worktree add --detach "$before" "$before_rev" >/dev/null
trap 'git worktree remove --force "$before"' EXIT
for r in $(seq 1 "$rounds"); do
  for side in before after; do
    dir=$([ "$side" = before ] && echo "$before" || pwd)
    echo "round $r: $side ($(cd "$dir" && git rev-parse --short HEAD))"
    (cd "$dir" && deno run -A bench/model_bench.ts --quick) >"$out/model_${side}_$r.md" 2>&1
    (cd "$dir" && deno bench -A bench/moe_op_bench.ts) >"$out/moe_${side}_$r.txt" 2>&1
    (cd "$dir" && deno bench -A bench/ssm_op_bench.ts) >"$out/ssm_${side}_$r.txt" 2>&1
  done
done
echo "logs in $out/"
