#!/usr/bin/env bash
# One slide per SLURM array task, the reference prepared once on the shared file system.
#
#   examples/slurm_array.sh SLIDES.txt OUT [RUN OPTIONS] -- REFERENCE OPTIONS
#
#   SLIDES.txt         one slide path per line (blank lines ignored); task i runs line i
#   OUT                results folder on a file system every node sees
#   RUN OPTIONS        options of both `wsi-sat reference prepare` and `wsi-sat run` that change
#                      the result: --config FILE, --set KEY=VALUE, --slide-mpp, --device
#   REFERENCE OPTIONS  --reference/--reference-mask/--reference-mpp/--mpp, or
#                      --reference-geojson/--reference-slide, --class-name, --negative ...
#
# e.g. examples/slurm_array.sh cohort.txt /scratch/$USER/glands --set wsi.tile_px=1024 \
#        -- --reference gland.png --reference-mask gland_mask.png --reference-mpp 0.5
#
# Two submissions: a job that encodes and calibrates the reference once and writes
# OUT/reference.wsisat (`wsi-sat reference prepare`), then an array of one task per slide that
# starts after it succeeded and reads it (`wsi-sat run --reference-cache`), so N tasks do not each
# spend the reference's calibration again. The cache is signed by the reference, masks, config,
# weights and version: a task whose --config/--set differ from the prepare job's refuses it
# (exit 2) instead of mixing. Each task runs with --resume: a task that is requeued, or
# resubmitted after a walltime kill, reuses its finished batches, and a slide already complete
# with these inputs is skipped. OUT/summary.csv is rewritten by every task from all run.json of
# the folder, so the last task to finish leaves the whole cohort's table; `wsi-sat check OUT`
# confirms every slide's outputs are complete.
#
# Environment (all optional):
#   WSI_SAT       the command ["wsi-sat"], e.g. "$PWD/.venv/bin/wsi-sat"
#   SBATCH_ARGS   options for both jobs, e.g. "--partition=gpu --gres=gpu:1 --account=lab"
#   TASK_TIME     walltime of one slide's task ["02:00:00"]
#   TASK_CPUS     --cpus-per-task of a task [8]; TASK_MEM its --mem ["32G"]
#   MAX_PARALLEL  tasks running at once (the array's %N throttle) [50]
#   DRY_RUN=1     print the two sbatch commands instead of submitting them
set -euo pipefail

WSI_SAT=${WSI_SAT:-wsi-sat}
TASK_TIME=${TASK_TIME:-02:00:00}
TASK_CPUS=${TASK_CPUS:-8}
TASK_MEM=${TASK_MEM:-32G}
MAX_PARALLEL=${MAX_PARALLEL:-50}

die() { echo "slurm_array.sh: $*" >&2; exit 2; }

# Options before `--` (shared) and after it (the reference), from "$@" after SLIDES and OUT.
split_options() {
  SHARED=(); REFERENCE=(); local side=shared
  for arg in "$@"; do
    if [[ $side == shared && $arg == "--" ]]; then side=reference; continue; fi
    if [[ $side == shared ]]; then SHARED+=("$arg"); else REFERENCE+=("$arg"); fi
  done
}

# The slide of array task $1: the $1-th non-blank line of the list.
slide_of_task() {
  awk -v n="$1" 'NF { if (++i == n) { sub(/^[ \t]+/, ""); sub(/[ \t\r]+$/, ""); print; exit } }' "$2"
}

mode=${1:-}
case "$mode" in
  prepare)  # inside the prepare job: prepare OUT SHARED... -- REFERENCE...
    out=$2; shift 2; split_options "$@"
    exec $WSI_SAT reference prepare "${REFERENCE[@]}" "${SHARED[@]}" --out "$out/reference.wsisat"
    ;;
  task)  # inside array task $SLURM_ARRAY_TASK_ID: task SLIDES OUT SHARED...
    slides=$2; out=$3; shift 3
    slide=$(slide_of_task "${SLURM_ARRAY_TASK_ID:?not inside a SLURM array task}" "$slides")
    [[ -n $slide ]] || die "no line ${SLURM_ARRAY_TASK_ID} in $slides"
    exec $WSI_SAT run "$slide" --reference-cache "$out/reference.wsisat" --out "$out" --resume "$@"
    ;;
esac

# Submitting: SLIDES OUT SHARED... -- REFERENCE...
[[ $# -ge 2 ]] || die "usage: slurm_array.sh SLIDES.txt OUT [RUN OPTIONS] -- REFERENCE OPTIONS"
slides=$(realpath "$1"); out=$2; shift 2
[[ -f $slides ]] || die "slide list '$slides' not found; give a text file with one slide per line"
split_options "$@"
[[ ${#REFERENCE[@]} -gt 0 ]] || die "no reference options after '--' (e.g. -- --reference ref.png --reference-mask ref_mask.png)"
count=$(awk 'NF' "$slides" | wc -l)
[[ $count -gt 0 ]] || die "'$slides' lists no slides"
while IFS= read -r slide; do  # a typo in the list fails here, not in task 317 at 3 am
  [[ -e $slide ]] || die "slide '$slide' (in $slides) not found"
done < <(awk 'NF { sub(/^[ \t]+/, ""); sub(/[ \t\r]+$/, ""); print }' "$slides")
mkdir -p "$out/slurm-logs"
out=$(realpath "$out")
self=$(realpath "$0")
# SBATCH_ARGS is split on spaces on purpose: it holds several sbatch options.
# shellcheck disable=SC2206
extra=(${SBATCH_ARGS:-})

prepare_cmd=(sbatch --parsable --job-name=wsi-sat-reference --time=00:30:00
             --cpus-per-task="$TASK_CPUS" --mem="$TASK_MEM" "${extra[@]}"
             --output="$out/slurm-logs/reference-%j.log"
             "$self" prepare "$out" "${SHARED[@]}" -- "${REFERENCE[@]}")
array_cmd=(sbatch --parsable --job-name=wsi-sat --array="1-$count%$MAX_PARALLEL"
           --time="$TASK_TIME" --cpus-per-task="$TASK_CPUS" --mem="$TASK_MEM" "${extra[@]}"
           --output="$out/slurm-logs/slide-%a-%A.log"
           "$self" task "$slides" "$out" "${SHARED[@]}")

if [[ ${DRY_RUN:-0} == 1 ]]; then
  printf '%q ' "${prepare_cmd[@]}"; echo
  printf '%q ' "${array_cmd[@]:0:2}" "--dependency=afterok:<prepare job>" "${array_cmd[@]:2}"; echo
  exit 0
fi
prepare_id=$("${prepare_cmd[@]}")
array_id=$("${array_cmd[@]:0:2}" --dependency="afterok:${prepare_id%%;*}" "${array_cmd[@]:2}")
echo "reference job ${prepare_id%%;*}, array job ${array_id%%;*} ($count slides, $MAX_PARALLEL at once) -> $out"
echo "when done: $WSI_SAT check $out   (summary: $out/summary.csv)"
