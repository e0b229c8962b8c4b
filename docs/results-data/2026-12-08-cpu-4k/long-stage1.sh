#!/usr/bin/env bash
# Stage-1 length at 4K: the GPU's step counts (2000 + 500) instead of 600 + 200, seed 1, K 128.
# Usage: long-stage1.sh SEED ARMS TAG (here: 1 dense dense, and 1 causal causal)
set -euo pipefail
s="${1:-1}" arms="$2" tag="$3"
CLI="${CLI:-build/cpu/lighthouse}"  # run where run-seed.sh left ext4k-s$s
M="--corpus recall --layers 2 --dim 128 --heads 2 --seq 4k --batch 1 --levels 2 --pool 4 --lr 3e-3 --warmup 20 --init-std 0.02 --corpus-tokens 16m --threads 1 --seed $s"
A="--stage1-steps 2000 --stage2-steps 500 --eval-every 500 --eval-batches 8 --passkey-trials 2 --leak-samples 32 --init-from ext4k-s$s --quiet"
$CLI train --compare $M $A --topk 128 --arms "$arms" --compare-dir s$s-long-$tag > s$s-long-$tag.log 2>&1
