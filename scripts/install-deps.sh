#!/usr/bin/env bash
# Installs the Debian bookworm packages pardl needs, and only those that are missing.
# Idempotent: when everything is present it only checks (dpkg-query) and exits.
#   bash scripts/install-deps.sh          build, test, benchmark and main-job packages
#   bash scripts/install-deps.sh report   those plus what the report needs (scripts/report.sh)
set -euo pipefail

packages=(
    build-essential cmake ninja-build pkg-config g++
    libxtensor-dev libxsimd-dev xtl-dev
    libmpich-dev mpich
    catch2 libcli11-dev nlohmann-json3-dev libbenchmark-dev zlib1g-dev
    dataset-fashion-mnist gnuplot-nox
    procps # free: the benchmarks record the machine's memory (not in minimal images)
)
# The report: Debian's python3 (standard library only) crunches the CSVs, gnuplot draws, pandoc
# turns Markdown into HTML and WeasyPrint renders it to PDF (far smaller than a TeX installation).
if [[ ${1:-} == report ]]; then
    packages+=(python3 pandoc weasyprint fonts-dejavu-core)
fi

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$p")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install-deps: all ${#packages[@]} packages are installed"
    exit 0
fi

echo "install-deps: missing: ${missing[*]}"
if [[ "$(id -u)" -ne 0 ]]; then
    echo "install-deps: error: installing packages needs root; run as root:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
echo "install-deps: installed ${missing[*]}"
