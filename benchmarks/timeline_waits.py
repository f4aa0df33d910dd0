#!/usr/bin/python3
"""Splits each step's worker reduction, as recorded by an example's --timeline trace, into the
time spent waiting for the last worker to finish its backward pass and the time spent summing
(and, with one process, updating) after every worker is done. Standard library only.

    build/release/examples/cnn_openmp --threads 2 --epochs 1 --limit 12800 --timeline t.json
    /usr/bin/python3 benchmarks/timeline_waits.py t.json

Reads the Chrome trace that pardl::Timeline writes: per rank (pid), one lane per worker with its
"backward" events and a master lane with one "reduce_workers" (or "reduce_workers+update") event
per step, which starts when worker 0 finishes its backward pass.
"""
import json
import statistics
import sys


def main(path):
    events = [e for e in json.load(open(path))["traceEvents"] if e.get("ph") == "X"]
    ranks = sorted({e["pid"] for e in events})
    print("rank,steps,reduce_phase_us_median,wait_for_last_worker_us_mean,"
          "after_last_worker_us_median,steps_where_worker0_was_last")
    for pid in ranks:
        mine = [e for e in events if e["pid"] == pid]
        ends = {}  # worker lane -> backward end times, in step order
        for e in mine:
            if e["name"] == "backward":
                ends.setdefault(e["tid"], []).append(e["ts"] + e["dur"])
        reduce = [e for e in mine if e["name"].startswith("reduce_workers")]
        if not ends or not reduce:
            continue
        steps = min(len(reduce), *(len(v) for v in ends.values()))
        waits, afters, worker0_last = [], [], 0
        for i in range(steps):
            last = max(v[i] for v in ends.values())
            start, dur = reduce[i]["ts"], reduce[i]["dur"]
            waits.append(max(0.0, last - start))
            afters.append(start + dur - max(last, start))
            worker0_last += ends[min(ends)][i] == last
        print(f"{pid},{steps},{statistics.median(r['dur'] for r in reduce[:steps]):.1f},"
              f"{statistics.mean(waits):.1f},{statistics.median(afters):.1f},{worker0_last}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: timeline_waits.py TRACE.json")
    main(sys.argv[1])
