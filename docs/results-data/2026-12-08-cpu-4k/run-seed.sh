#!/usr/bin/env bash
# The own-query-share study at 4K on the CPU, one seed: extension of the 1K warm start to 4K
# (dense, 150 steps), then dense / causal at K 128, 256, 512 / causal K 128 with layer 0 dense.
# The warm start (docs/RESULTS.md §4, ninth session): lighthouse train --corpus recall --layers 2
# --dim 128 --heads 2 --seq 1k --batch 4 --levels 2 --pool 4 --topk 128 --lr 3e-3 --warmup 20
# --init-std 0.02 --corpus-tokens 8m --eval-every 250 --passkey-trials 4 --leak-samples 64
# --threads 1 --stage1-steps 0 --stage2-steps 1500 --seed $s --save warm1k-s$s
# Only the evaluation records of each run are kept here (*-evals.jsonl: no per-step records).
set -euo pipefail
s="$1"
CLI="${CLI:-build/cpu/lighthouse}"  # run from a work folder holding warm1k-s$s (below)
M="--corpus recall --layers 2 --dim 128 --heads 2 --seq 4k --batch 1 --levels 2 --pool 4 --lr 3e-3 --warmup 20 --init-std 0.02 --corpus-tokens 8m --threads 1 --seed $s"
[[ -d ext4k-s$s ]] || $CLI train $M --topk 128 --stage1-steps 0 --stage2-steps 150 --eval-every 0 --eval-batches 4 --passkey-trials 1 --leak-samples 2 --init-from warm1k-s$s --quiet --save ext4k-s$s --metrics ext4k-s$s.jsonl > ext4k-s$s.log 2>&1
A="--stage1-steps 600 --stage2-steps 200 --eval-every 200 --eval-batches 8 --passkey-trials 2 --leak-samples 32 --init-from ext4k-s$s --quiet"
run() { local tag="$1"; shift; [[ -f s$s-$tag/compare.json ]] && return 0; $CLI train --compare $M $A --compare-dir s$s-$tag "$@" > s$s-$tag.log 2>&1; }
run k128 --topk 128 --arms dense,causal
run k512 --topk 512 --arms causal
run k128-dl0 --topk 128 --dense-layers 0 --arms causal
run k256 --topk 256 --arms causal
