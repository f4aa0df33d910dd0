#!/usr/bin/env bash
# Regenerates the technical report from measurements: runs the accuracy study (every policy, plus
# Serial with 2 workers taken in turn), the step-by-step drift study, the strong/weak scaling and
# allreduce study, then computes the model and tables (make_report.py), draws the figures
# (gnuplot) and renders docs/report.md to docs/report.pdf (pandoc + WeasyPrint).
#   bash scripts/report.sh                 everything (about 15 minutes on 2 cores)
#   SKIP_RUNS=1 bash scripts/report.sh     only tables, figures, report and PDF from results/ (with
#                                          the committed scaling results when this machine has none)
#   SCALING_DIR=results/scaling/<label>    use another machine's scaling results
#   MAX_WORKERS=16                         scaling up to 16 workers (on a machine that has them)
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/common.sh

bash scripts/install-deps.sh report
max_workers=${MAX_WORKERS:-$(nproc)}
label=${MACHINE_LABEL:-$(hostname)-${max_workers}w}
scaling_dir=${SCALING_DIR:-results/scaling/$label}
build=build/release

if [[ ${SKIP_RUNS:-0} != 1 ]]; then
    configure_release "$build"
    cmake --build "$build" -j"$(nproc)"
    POLICIES="serial serial2 openmp mpi hybrid tensor" bash benchmarks/run_accuracy.sh
    mkdir -p results/report
    echo "== drift study (W-MLP, 5 epochs, 5 trainers)"
    OMP_NUM_THREADS=2 "$build/benchmarks/report_drift" --epochs 5 --every 10 >results/report/drift.csv
    MACHINE_LABEL=$label SKIP_BUILD=1 bash benchmarks/scaling/run_scaling.sh --max-workers "$max_workers"
fi

# Regenerating on another machine: the scaling study that was run is the one in results/scaling/.
if [[ ${SKIP_RUNS:-0} == 1 && -z ${SCALING_DIR:-} && ! -d $scaling_dir ]]; then
    found=(results/scaling/*/)
    if [[ ${#found[@]} == 1 && -d ${found[0]} ]]; then
        scaling_dir=${found[0]%/}
        echo "report: no $label scaling results here; using $scaling_dir"
    else
        echo "report: no scaling results in $scaling_dir; name one with SCALING_DIR=results/scaling/<label>" \
            "(there are: $(ls results/scaling 2>/dev/null | tr '\n' ' '))" >&2
        exit 1
    fi
fi

mkdir -p docs/figures
/usr/bin/python3 benchmarks/report/make_report.py --scaling "$scaling_dir"
gnuplot -e "data='results/report'; scaling='$scaling_dir'; figs='docs/figures'" benchmarks/report/plots.gp
# Paths in the Markdown are relative to docs/; WeasyPrint lays out the pages with report.css.
(cd docs && pandoc report.md --standalone --from markdown --to html5 --css ../benchmarks/report/report.css \
    --metadata pagetitle="pardl report" --pdf-engine=weasyprint -o report.pdf)
echo "report: docs/report.md, docs/report.pdf, figures in docs/figures/, data in results/report/ and $scaling_dir/"
