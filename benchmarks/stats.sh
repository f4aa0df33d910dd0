# shellcheck shell=bash
# Helpers shared by the benchmark scripts; source it, do not run it.

# median: the median of the numbers on stdin, one per line (the mean of the middle two if even).
median() {
    sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
