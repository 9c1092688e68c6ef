#!/usr/bin/env bash
# The embedded study (docs/studies.md): both papers' comparisons on the tiny model and
# synth_cls_study, into one study directory; then the tables and plots are copied here.
# Resumable: rerun after an interruption. About an hour on 2 cores (--jobs 2).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-harness_studies/embedded}"
export OMP_NUM_THREADS=1
harness study curr-reft --output_path "$out" --no_progress
harness study dc-sft --output_path "$out" --no_progress --profile_temperature 0.3
dest=leaderboards/embedded_study
mkdir -p "$dest/plots"
cp "$out"/study-*.md "$out"/study-*.csv "$out"/study-*.html "$out"/overlap.json "$dest/"
cp "$out"/plots/*.png "$dest/plots/"
for m in sft grpo curr_rl rs_sft sft_m sft_em; do  # training curves of seed 0
  for f in "$out/train/$m/seed-0/plots/"*.png; do
    [ -e "$f" ] && cp "$f" "$dest/plots/${m}_seed0_$(basename "$f")"
  done
done
echo "tables and plots in $dest"
