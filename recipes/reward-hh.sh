#!/usr/bin/env bash
# A reward model on human preferences (Anthropic HH-RLHF, harmless-base), every step an llmts
# command on ../shared/data, from nothing to a held-out pairwise accuracy:
#
#   recipes/reward-hh.sh OUT          # OUT/rm: the reward model; the last line: accuracy 0.xxxx
#   SEED=7 recipes/reward-hh.sh OUT   # another seed for the base and the reward model (same split)
#
# 1. split the pairs: 10% held out (OUT/data/heldout.jsonl), never seen by anything below;
# 2. the training pairs' dialogues as text; a byte-level BPE tokenizer trained on it;
# 3. a small Llama base pretrained on that text;
# 4. the reward model: the base's trunk plus a scalar head, Bradley-Terry loss on the training pairs
#    (about one epoch; --center-rewards 0.01 keeps the rewards near 0);
# 5. its pairwise accuracy on the held-out pairs (llmts reward eval; last line).
#
# Held-out accuracy 53.8 / 57.4 / 57.4% over seeds 1337 / 1 / 2 (the shorter answer wins 56.3%): the
# issue's 60% is not reached yet; see the README's section for what was tried.
#
# Run from a clone after `npm install` (which builds dist/); LLMTS_DATA overrides ../shared/data.
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: recipes/reward-hh.sh OUT" >&2
  exit 2
fi
OUT=$1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${LLMTS_DATA:-$ROOT/../shared/data}
SEED=${SEED:-1337}
PAIRS=$DATA/hh-rlhf/harmless-base-train.jsonl
llmts() { node "$ROOT/dist/src/cli/main.js" "$@"; }
START=$SECONDS
step() { printf '\n== [%dm%02ds] %s\n' $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$*"; }

[ -f "$ROOT/dist/src/cli/main.js" ] || { echo "recipes/reward-hh.sh: no dist/: run npm install (or npm run build) first" >&2; exit 1; }
[ -f "$PAIRS" ] || { echo "recipes/reward-hh.sh: $PAIRS not found (set LLMTS_DATA to the shared data folder)" >&2; exit 1; }

step "split: 10% of the pairs held out"
llmts data split "$PAIRS" --eval-split 0.1 --seed 0 -o "$OUT/data"

step "text of the training pairs, tokenizer"
llmts data text "$OUT/data/train.jsonl" --field chosen --field rejected -o "$OUT/data/train.txt"
llmts tokenizer train --data "$OUT/data/train.txt" --vocab-size 2048 -o "$OUT/tokenizer"

step "base: a 4-layer Llama pretrained on the training dialogues"
llmts train --preset llama-15m --data "$OUT/data/train.txt" --tokenizer "$OUT/tokenizer/tokenizer.json" \
  -c 512 --n-layer 4 --n-head 4 --n-embd 128 --hidden-dim 384 -b 8 --max-iters 200 --lr 2e-3 \
  --eval-interval 100 --eval-iters 5 --final-eval-iters 10 --sample-tokens 0 --seed "$SEED" -o "$OUT/base" --overwrite

step "reward model on the training pairs"
llmts reward train -m "$OUT/base" --data "$OUT/data/train.jsonl" --eval-split 0 --max-length 256 --truncate-prompt \
  -b 8 --lr 3e-4 --max-iters 200 --center-rewards 0.01 --eval-interval 100 --eval-iters 5 --seed "$SEED" -o "$OUT/rm" --overwrite

step "held-out pairwise accuracy (for scale: the shorter answer wins 111 of these 197 pairs, 0.5635)"
llmts reward eval -m "$OUT/rm" --data "$OUT/data/heldout.jsonl" --max-length 512 --truncate-prompt
