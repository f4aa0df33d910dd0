#!/usr/bin/python3
"""Turns pardl's measurements into the report: plot data, the performance model and docs/report.md.

Reads (all produced by commands in this repository, see scripts/report.sh):
  results/accuracy/*.json           5-epoch runs of every policy   (benchmarks/run_accuracy.sh;
                                    tensor included)
  results/report/drift.csv          step-by-step parameter drift    (report_drift)
  results/scaling/<label>/*.csv     strong/weak scaling, allreduce  (benchmarks/scaling/run_scaling.sh)
Writes results/report/*.csv and *.gp (gnuplot inputs) and docs/report.md from the template
benchmarks/report/report.md.in, whose {{name}} placeholders are filled here; a placeholder
without a value is an error, so the report never shows a number that was not computed.
Standard library only (Debian's python3).
"""
import argparse
import csv
import json
import math
import pathlib
import re
import sys

POLICIES = ["serial", "serial2", "openmp", "mpi", "hybrid", "tensor"]
# The data-parallel policies (replicas, one gradient allreduce per step) and every policy that the
# scaling study times with more than one worker. "tensor" (TensorParallel) splits each Dense
# layer between the threads instead of the batch, and shares W-CNN's convolutions by rows.
DATA_PARALLEL = ["openmp", "mpi", "hybrid"]
SCALED = DATA_PARALLEL + ["tensor"]
ONLY_FOR = {"serial2": ("mlp",)}
TITLES = {"openmp": "OpenMP", "mpi": "MPI", "hybrid": "Hybrid", "tensor": "tensor"}
PHASES = ["data", "forward", "backward", "reduce_workers", "allreduce", "update"]
# Training FLOPs per sample (forward + backward), as the models report them.
FLOPS_PER_SAMPLE = {"mlp": 1007104, "cnn": 27411456}
# The models' parameter counts, and the floats of one gradient message: the parameters and the
# trainer's tail (step_tail_floats in train/trainer.hpp: loss, rows, correct, learning rate); the
# trainer's buffer also pads each layer's block to a cache line (6 floats more in all), left out.
PARAMS = {"mlp": 235146, "cnn": 824458}
STEP_TAIL_FLOATS = 4
GRAD_FLOATS = {wl: n + STEP_TAIL_FLOATS for wl, n in PARAMS.items()}
NAMES = {"mlp": "W-MLP", "cnn": "W-CNN"}
# Floats per image of each Dense layer's output: what a tensor-parallel team sums in parts.
DENSE_OUTPUTS = {"mlp": (256, 128, 10), "cnn": (256, 10)}
# What the team shares by rows (W-CNN's convolutions up to its Flatten): floats per image of that
# prefix's output, and its parameters (two convolutions with biases).
PREFIX_OUTPUT = {"mlp": 0, "cnn": 64 * 7 * 7}
PREFIX_PARAMS = {"mlp": 0, "cnn": (32 * 9 + 32) + (64 * 32 * 9 + 64)}

# The network assumed for the cluster predictions (not measured here: stated in the report).
NET_ALPHA = 2.0e-6  # s per message: a typical InfiniBand/RoCE MPI latency
NET_BANDWIDTH = 12.5e9  # B/s: 100 Gb/s per node
CLUSTER_NODES = [1, 2, 4, 8, 16, 64, 128, 256, 512, 1024]
WORKERS_PER_NODE = 2  # nodes like the measured machine


def runs_for(wl, p):
    """Whether policy p exists for workload wl (serial2: W-MLP only)."""
    return wl in ONLY_FOR.get(p, ("mlp", "cnn"))


def fail(msg):
    sys.exit(f"make_report: error: {msg}")


def read_csv(path):
    if not path.exists():
        fail(f"{path} is missing; run the command that produces it (scripts/report.sh)")
    with path.open() as f:
        return list(csv.DictReader(f))


def read_json(path):
    if not path.exists():
        fail(f"{path} is missing; run benchmarks/run_accuracy.sh (scripts/report.sh does)")
    return json.loads(path.read_text())


def fmt(x, digits=3):
    """Significant-digit formatting that never prints 1e-05 style for ordinary numbers."""
    if x == 0:
        return "0"
    if abs(x) >= 1e-3 and abs(x) < 1e5:
        # From 10^(digits-1) up, whole numbers: "{:.2g}" turns 99.6 into "1e+02".
        return f"{x:.{digits}g}" if abs(x) < 10 ** (digits - 1) else f"{x:.0f}"
    return f"{x:.{max(1, digits - 1)}e}"


def pct(x):
    return f"{100 * x:.0f}%"


def rel_diff(a, b):
    return abs(a - b) / abs(b)


def max_loss_drift(runs, wl, policies, ref):
    """The largest relative difference of any epoch's training loss between `policies` and `ref`."""
    ref_loss = runs[(wl, ref)]["train_loss"]
    return max(rel_diff(a, b) for p in policies for a, b in zip(runs[(wl, p)]["train_loss"], ref_loss))


# ---- correctness: loss curves and drift -----------------------------------------------------

def correctness(acc_dir, out, v):
    runs = {}
    for wl in ("mlp", "cnn"):
        for p in POLICIES:
            f = acc_dir / f"{wl}_{p}.json"
            if f.exists() and runs_for(wl, p):
                runs[(wl, p)] = read_json(f)
        if (wl, "serial") not in runs:
            fail(f"{acc_dir}/{wl}_serial.json is missing")
    for wl in ("mlp", "cnn"):
        if (wl, "tensor") not in runs:
            fail(f"{acc_dir}/{wl}_tensor.json is missing; run POLICIES=\"... tensor\" benchmarks/run_accuracy.sh "
                 "(scripts/report.sh does)")
    for wl in ("mlp", "cnn"):
        pols = [p for p in POLICIES if (wl, p) in runs]
        epochs = len(runs[(wl, "serial")]["train_loss"])
        with (out / f"loss_{wl}.csv").open("w") as f:
            f.write("epoch," + ",".join(pols) + "," + ",".join(f"{p}_vs_serial" for p in pols) + ","
                    + ",".join(f"{p}_vs_serial2" for p in pols) + "\n")
            for e in range(epochs):
                base = runs[(wl, "serial")]["train_loss"][e]
                base2 = runs[(wl, "serial2")]["train_loss"][e] if (wl, "serial2") in runs else None
                losses = [runs[(wl, p)]["train_loss"][e] for p in pols]
                d1 = [rel_diff(x, base) for x in losses]
                d2 = [rel_diff(x, base2) if base2 else float("nan") for x in losses]
                f.write(f"{e + 1}," + ",".join(f"{x:.10g}" for x in losses + d1 + d2) + "\n")
        v[f"{wl}_epochs"] = str(epochs)
        v[f"{wl}_params"] = f"{PARAMS[wl]:,}"
        v[f"{wl}_mflop"] = fmt(runs[(wl, "serial")]["flops_per_sample"] / 1e6, 4)
        # Table rows: final accuracy, loss drift against Serial and Serial with 2 workers, checksum.
        rows = []
        for p in pols:
            r = runs[(wl, p)]
            tl = r["train_loss"]
            d1 = max_loss_drift(runs, wl, [p], "serial")
            d2 = max_loss_drift(runs, wl, [p], "serial2") if (wl, "serial2") in runs else None
            label = "serial (2 in turn)" if p == "serial2" else p
            rows.append(f"| {NAMES[wl]} | {label} | {r['ranks']} × {r.get('workers_per_rank', r['threads'])} | "
                        f"{r['final_test_accuracy']:.4f} | {tl[0]:.4f} → {tl[-1]:.4f} | {fmt(d1, 2)} | "
                        f"{fmt(d2, 2) if d2 is not None else '–'} | `{r['param_checksum']}` | "
                        f"{r['train_seconds'] / len(tl):.2f} |")
        v[f"table_accuracy_{wl}"] = "\n".join(rows)
        v[f"{wl}_serial_acc"] = f"{runs[(wl, 'serial')]['final_test_accuracy']:.4f}"
        v[f"{wl}_serial_epoch_s"] = f"{runs[(wl, 'serial')]['train_seconds'] / epochs:.2f}"
        # The data-parallel policies: the same sums as Serial with 2 workers in turn.
        par = [p for p in pols if p in DATA_PARALLEL]
        if par:
            accs = [runs[(wl, p)]["final_test_accuracy"] for p in par]
            v[f"{wl}_par_acc_min"] = f"{min(accs):.4f}"
            v[f"{wl}_par_acc_max"] = f"{max(accs):.4f}"
            base_acc = runs[(wl, "serial")]["final_test_accuracy"]
            v[f"{wl}_acc_spread_pp"] = f"{100 * max(abs(a - base_acc) for a in accs):.2f}"
            v[f"{wl}_maxdiff_vs_serial"] = fmt(max_loss_drift(runs, wl, par, "serial"), 2)
            if (wl, "serial2") in runs:
                v[f"{wl}_maxdiff_vs_serial2"] = fmt(max_loss_drift(runs, wl, par, "serial2"), 2)
                v[f"{wl}_serial2_vs_serial"] = fmt(max_loss_drift(runs, wl, ["serial2"], "serial"), 2)
        # Every policy's speedup in these 5-epoch runs (training time, evaluation excluded).
        for p in pols:
            v[f"{wl}_{p}_acc_speedup"] = f"{runs[(wl, 'serial')]['train_seconds'] / runs[(wl, p)]['train_seconds']:.2f}"
        if (wl, "tensor") in runs:
            # Tensor parallelism sums each Dense output in parts over the inputs: another order.
            r = runs[(wl, "tensor")]
            base_acc = runs[(wl, "serial")]["final_test_accuracy"]
            v[f"{wl}_tensor_acc"] = f"{r['final_test_accuracy']:.4f}"
            v[f"{wl}_tensor_acc_pp"] = f"{100 * abs(r['final_test_accuracy'] - base_acc):.2f}"
            v[f"{wl}_tensor_vs_serial"] = fmt(max_loss_drift(runs, wl, ["tensor"], "serial"), 2)
            if (wl, "serial2") in runs:
                v[f"{wl}_tensor_vs_serial2"] = fmt(max_loss_drift(runs, wl, ["tensor"], "serial2"), 2)
            v[f"{wl}_tensor_epoch_s"] = f"{r['train_seconds'] / epochs:.2f}"
            others = [q for q in pols if q != "tensor" and runs[(wl, q)]["param_checksum"] == r["param_checksum"]]
            v[f"{wl}_tensor_checksum_note"] = (
                "its own checksum, shared with no other run" if not others
                else "the checksum of " + ", ".join(others))
    # One table for both workloads.
    v["table_accuracy"] = "\n".join(
        ["| workload | policy | ranks × workers | test acc. | train loss, first → last epoch "
         "| max rel. diff. vs Serial | vs Serial, 2 workers | parameter checksum | s/epoch |",
         "|---|---|---|---:|---|---:|---:|---|---:|", v["table_accuracy_mlp"], v["table_accuracy_cnn"]])
    return runs


def drift(path, v):
    rows = read_csv(path)
    if not rows:
        fail(f"{path} is empty")

    def first_above(col, thr):
        for r in rows:
            if float(r[col]) > thr:
                return int(r["step"])
        return None

    v["drift_steps"] = rows[-1]["step"]
    v["drift_openmp2_vs_serial2_max"] = fmt(max(float(r["openmp2_vs_serial2"]) for r in rows))
    for col, key in (("serial2_vs_serial1", "serial2"), ("nudged_vs_serial1", "nudged"),
                     ("tensor2_vs_serial1", "tensor2")):
        s = first_above(col, 1e-4)
        v[f"drift_{key}_1e4_step"] = str(s) if s else "never"
        v[f"drift_{key}_final"] = fmt(float(rows[-1][col]), 2)
    early = [float(r["serial2_vs_serial1"]) for r in rows if int(r["step"]) <= 300]
    v["drift_serial2_first300"] = fmt(max(early), 2) if early else "–"


# ---- scaling ------------------------------------------------------------------------------------

def step_seconds(r):
    return float(r["seconds"]) / float(r["steps"])


def workers_of(r):
    return int(r["ranks"]) * int(r["threads"])


def scaling(scal_dir, out, v):
    strong = read_csv(scal_dir / "strong.csv")
    weak = read_csv(scal_dir / "weak.csv")
    machine = (scal_dir / "machine.txt").read_text() if (scal_dir / "machine.txt").exists() else ""
    m = re.search(r"Model name:\s*(.+)", machine)
    v["cpu"] = m.group(1).strip() if m else "unknown CPU"
    # A guest may name its CPU only by brand ("AMD EPYC"); family and model tell the generation.
    fam = re.search(r"^CPU family:\s*(\d+)", machine, re.M)
    mod = re.search(r"^Model:\s*(\d+)", machine, re.M)
    if m and fam and mod:
        v["cpu"] += f" (family {fam.group(1)}, model {mod.group(1)})"
    m = re.search(r"nproc:\s*(\d+)", machine)
    v["nproc"] = m.group(1) if m else "?"
    m = re.search(r"g\+\+ \(.*?\) ([\d.]+)", machine)
    v["gxx"] = m.group(1) if m else "?"
    m = re.search(r"MPICH Version:\s*([\d.]+)", machine)
    v["mpich"] = m.group(1) if m else "?"
    m = re.search(r"date:\s*(\S+)", machine)
    v["scaling_date"] = m.group(1)[:10] if m else "?"
    m = re.search(r"^rounds:\s*(\d+)", machine, re.M)
    v["scaling_rounds"] = m.group(1) if m else "1"  # runs per configuration (the median is kept)
    # The hardware line of section 4, from what the scaling run recorded of its machine.
    flags = re.search(r"Flags:\s*(.+)", machine)
    flags = flags.group(1).split() if flags else []
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    m = re.search(r"L2 cache:\s*([\d.]+) (KiB|MiB) \((\d+) instances?\)", machine)
    if m:
        per_core = float(m.group(1)) / int(m.group(3))
        v["hw_caches"] = f"{isa}, {per_core:g} {m.group(2)} of L2 per core"
    else:
        v["hw_caches"] = isa
    m = re.search(r"^memory:\s*(.+)$", machine, re.M)
    v["hw_memory"] = f", {m.group(1).strip()} of memory" if m else ""
    m = re.search(r"Hypervisor vendor:\s*(\S+)", machine)
    v["hw_guest"] = f", a {m.group(1)} guest" if m else ""
    peaks = sorted(float(r["peak_gflops_per_core"]) for r in strong if r.get("peak_gflops_per_core"))
    v["hw_peak"] = fmt(peaks[len(peaks) // 2], 3) if peaks else "?"
    v["scaling_dir"] = str(scal_dir)

    # Serial time per step at each global batch, the baseline of both studies.
    serial = {(r["workload"], int(r["batch"])): step_seconds(r) for r in strong if r["policy"] == "serial"}
    table = []
    for mode, rows in (("strong", strong), ("weak", weak)):
        with (out / f"{mode}.csv").open("w") as f:
            f.write("workload,policy,per_worker_batch,global_batch,workers,speedup,efficiency,ms_per_step\n")
            for r in rows:
                wl, p, b = r["workload"], r["policy"], int(r["batch"])
                P = workers_of(r)
                t = step_seconds(r)
                if mode == "strong":
                    base = serial.get((wl, b))
                    s = base / t if base else float("nan")
                    label_batch = b
                else:
                    # Weak scaling: P workers process P times the per-worker batch in time t;
                    # the scaled speedup is P * T1(b) / T_P(P b).
                    pb = int(r["per_worker_batch"])
                    base = serial.get((wl, pb))
                    s = P * base / t if base else float("nan")
                    label_batch = pb
                eff = s / P
                f.write(f"{wl},{p},{r['per_worker_batch']},{b},{P},{s:.4f},{eff:.4f},{1e3 * t:.4f}\n")
                table.append((mode, wl, label_batch, p, P, s, eff, 1e3 * t))
    # One contiguous block per (workload, policy, batch), starting at the serial point, so that
    # gnuplot draws each series as one line.
    for mode in ("strong", "weak"):
        with (out / f"{mode}_series.csv").open("w") as f:
            f.write("workload,policy,batch,workers,speedup,efficiency\n")
            for wl in ("mlp", "cnn"):
                for p in SCALED:
                    if not runs_for(wl, p):
                        continue
                    for b in (64, 256, 1024):
                        pts = sorted((x[4], x[5], x[6]) for x in table
                                     if x[0] == mode and x[1] == wl and x[2] == b and x[3] in ("serial", p))
                        for P, s, e in pts:
                            f.write(f"{wl},{p},{b},{P},{s:.4f},{e:.4f}\n")
                        f.write("\n")
    # Markdown tables at the largest worker count measured.
    pmax = max(x[4] for x in table)

    def at_pmax(mode, wl, b, p):
        """(speedup, efficiency) of one configuration at pmax workers, or None if not measured."""
        hit = [x for x in table if x[:4] == (mode, wl, b, p) and x[4] == pmax]
        return (hit[0][5], hit[0][6]) if hit else None

    v["max_workers"] = str(pmax)
    for mode in ("strong", "weak"):
        hdr = ("global batch" if mode == "strong" else "batch per worker")
        rows = [f"| workload | {hdr} | Serial ms/step | " + " | ".join(
            f"{p} speedup (eff.)" for p in SCALED) + " |",
            "|---|---:|---:|" + "---:|" * len(SCALED)]
        for wl in ("mlp", "cnn"):
            for b in (64, 256, 1024):
                cells = []
                for p in SCALED:
                    hit = at_pmax(mode, wl, b, p)
                    cells.append(f"{hit[0]:.2f} ({hit[1]:.2f})" if hit else "–")
                base = serial.get((wl, b))
                rows.append(f"| {NAMES[wl]} | {b} | {1e3 * base:.2f} | " + " | ".join(cells) + " |"
                            if base else f"| {NAMES[wl]} | {b} | – | " + " | ".join(cells) + " |")
        v[f"table_{mode}"] = "\n".join(rows)
    # Speedup and efficiency of every measured configuration at pmax workers, e.g.
    # strong_mlp_64_tensor and strong_mlp_64_tensor_eff; the fastest policy per workload and batch.
    for mode in ("strong", "weak"):
        for wl in ("mlp", "cnn"):
            for b in (64, 256, 1024):
                hits = {p: at_pmax(mode, wl, b, p) for p in SCALED}
                hits = {p: h for p, h in hits.items() if h}
                for p, h in hits.items():
                    v[f"{mode}_{wl}_{b}_{p}"] = f"{h[0]:.2f}"
                    v[f"{mode}_{wl}_{b}_{p}_eff"] = f"{h[1]:.2f}"
                if hits:
                    v[f"{mode}_{wl}_{b}_best"] = TITLES[max(hits, key=lambda p: hits[p][0])]
    # Where tensor parallelism ranks among each workload's policies, batch by batch (strong scaling).
    for wl in ("mlp", "cnn"):
        best = []
        for b in (64, 256, 1024):
            hits = {p: at_pmax("strong", wl, b, p) for p in SCALED}
            hits = {p: h[0] for p, h in hits.items() if h}
            if "tensor" in hits and hits["tensor"] == max(hits.values()):
                best.append(str(b))
        v[f"{wl}_tensor_fastest_at"] = ("no batch" if not best else f"batch {best[0]}" if len(best) == 1
                                        else "batches " + ", ".join(best[:-1]) + " and " + best[-1])
    # How OpenMP and MPI compare on this node, configuration by configuration (section 8).
    pairs = [(at_pmax("strong", wl, b, "openmp"), at_pmax("strong", wl, b, "mpi"))
             for wl in ("mlp", "cnn") for b in (64, 256, 1024)]
    pairs = [(o[0], m[0]) for o, m in pairs if o and m]
    v["mpi_faster_count"] = str(sum(m > o for o, m in pairs))
    v["omp_mpi_pairs"] = str(len(pairs))
    v["omp_mpi_max_gap"] = f"{max(abs(m - o) / min(m, o) for o, m in pairs):.0%}" if pairs else "?"
    # Phase breakdown per step at batch 64 (rank 0's first worker; see the timeline docs).
    with (out / "phases.csv").open("w") as f:
        f.write("label," + ",".join(PHASES) + "\n")
        for wl in ("mlp", "cnn"):
            for r in strong:
                if r["workload"] != wl or int(r["batch"]) != 64:
                    continue
                P = workers_of(r)
                steps = float(r["steps"])
                vals = [1e3 * float(r[f"{ph}_s"]) / steps for ph in PHASES]
                if P > 1:  # the share of the step outside forward/backward: reduction and update
                    # (tensor: its update of what each thread owns, and the wait after it)
                    comm = sum(vals[PHASES.index(ph)] for ph in ("reduce_workers", "allreduce", "update"))
                    v[f"{wl}_{r['policy']}_comm_share"] = pct(comm / sum(vals))
                f.write(f"\"{NAMES[wl]}: {r['policy']} ({P})\"," + ",".join(f"{x:.4f}" for x in vals) + "\n")
    return strong, weak, serial


# ---- performance model ------------------------------------------------------------------------

def fit_alpha_beta(rows, path):
    """Least squares of t = alpha + beta * bytes, in relative error so small and large messages
    weigh alike (a plain fit would ignore the latency end)."""
    pts = [(float(r["bytes"]), float(r["seconds_median"])) for r in rows if r["path"] == path
           and int(r["ranks"]) == 2]
    if len(pts) < 2:
        return None
    # Minimise sum(((a + b m) - t) / t)^2: weighted linear least squares with weights 1/t^2.
    sw = swm = swmm = swt = swmt = 0.0
    for m, t in pts:
        w = 1.0 / (t * t)
        sw += w
        swm += w * m
        swmm += w * m * m
        swt += w * t
        swmt += w * m * t
    det = sw * swmm - swm * swm
    alpha = (swt * swmm - swm * swmt) / det
    beta = (sw * swmt - swm * swt) / det
    worst = max(abs(alpha + beta * m - t) / t for m, t in pts)
    return alpha, beta, worst


def model(scal_dir, out, strong, weak, serial, v):
    ar = read_csv(scal_dir / "allreduce.csv")
    fits = {}
    for path in ("shm", "mpi"):
        f = fit_alpha_beta(ar, path)
        if not f:
            fail(f"{scal_dir}/allreduce.csv has no 2-rank rows for path {path}")
        fits[path] = f
        v[f"alpha_{path}_us"] = fmt(f[0] * 1e6, 3)
        v[f"bw_{path}_gbs"] = fmt(1e-9 / f[1], 3)
        v[f"fit_{path}_worst"] = pct(f[2])
    with (out / "model_params.gp").open("w") as f:
        for path, (a, b, _) in fits.items():
            f.write(f"alpha_{path} = {a:.6e}\nbeta_{path} = {b:.6e}\n")
    for wl in ("mlp", "cnn"):
        mbytes = 4 * GRAD_FLOATS[wl]
        v[f"{wl}_grad_mb"] = f"{mbytes / 1e6:.2f}"
        for path in ("shm", "mpi"):
            a, b, _ = fits[path]
            v[f"{wl}_ar_{path}_us"] = fmt((a + b * mbytes) * 1e6, 3)

    # What one core reads from the other per step (batch B on T threads or ranks), in bytes.
    # Data parallelism: the other workers' share of the gradient and of the updated parameters,
    # 2 (T-1)/T of the parameters. Tensor parallelism: every Dense layer's output in parts
    # (forward) and every output gradient read whole (backward), of which (T-1)/T was written by
    # the others: 2 (T-1)/T B sum(widths); for a prefix shared by rows, its columns of the other
    # threads' rows of the prefix's output and of its gradient, 2 (T-1)/T B width / T, and the
    # prefix's parameters as data parallelism moves them. At T = 2, B = 64; the batch at which
    # the two are equal.
    T, B = 2, 64
    for wl in ("mlp", "cnn"):
        n_params = PARAMS[wl]
        dp_bytes = 4 * 2 * (T - 1) / T * n_params
        tp_bytes = 4 * 2 * (T - 1) / T * (B * (sum(DENSE_OUTPUTS[wl]) + PREFIX_OUTPUT[wl] / T) + PREFIX_PARAMS[wl])
        v[f"{wl}_dp_step_kb"] = f"{dp_bytes / 1e3:.0f}"
        v[f"{wl}_tp_step_kb"] = f"{tp_bytes / 1e3:.0f}"
        v[f"{wl}_dp_step_mb"] = f"{dp_bytes / 1e6:.2f}"
        v[f"{wl}_tp_step_mb"] = f"{tp_bytes / 1e6:.2f}"
        v[f"{wl}_tp_dp_batch"] = (
            f"{(n_params - PREFIX_PARAMS[wl]) / (sum(DENSE_OUTPUTS[wl]) + PREFIX_OUTPUT[wl] / T):.0f}")

    # Compute per sample and the per-step fixed part, from the serial runs at batch 64 and 1024:
    # T1(B) = B * t_sample + t_fixed (t_fixed: the update and other per-step work).
    params = {}
    for wl in ("mlp", "cnn"):
        t64, t1024 = serial[(wl, 64)], serial[(wl, 1024)]
        t_sample = (t1024 - t64) / (1024 - 64)
        t_fixed = max(0.0, t64 - 64 * t_sample)
        params[wl] = (t_sample, t_fixed)
        v[f"{wl}_t_sample_us"] = fmt(t_sample * 1e6, 3)
        v[f"{wl}_t_fixed_us"] = fmt(t_fixed * 1e6, 3)
        mflop = 1e-6 * FLOPS_PER_SAMPLE[wl]
        v[f"{wl}_gflops_serial"] = fmt(mflop * 1e-3 / t_sample, 3)
        # Compute-to-communication ratio at batch 64: one step's compute against one allreduce.
        mbytes = 4 * GRAD_FLOATS[wl]
        comp = 64 * t_sample
        for path in ("shm", "mpi"):
            a, b, _ = fits[path]
            v[f"{wl}_ratio_{path}"] = fmt(comp / (a + b * mbytes), 2)
        v[f"{wl}_comp64_us"] = fmt(comp * 1e6, 3)

    def allreduce_node(P, mbytes, path="shm"):
        # Reduce-scatter + allgather (what the shared-memory path and MPICH's large-message
        # algorithm do): log2(P) latency steps, 2 (P-1)/P of the message per rank; the 2-rank
        # fit has that factor equal to 1.
        if P <= 1:
            return 0.0
        a, b, _ = fits[path]
        return math.log2(P) * a + 2 * (P - 1) / P * b * mbytes

    def predict(wl, B, P, path="shm"):
        t_sample, t_fixed = params[wl]
        per = math.ceil(B / P)
        return per * t_sample + t_fixed / P + allreduce_node(P, 4 * GRAD_FLOATS[wl], path)

    # What the shared-memory path buys: the same model with plain MPI_Allreduce instead.
    for wl in ("mlp", "cnn"):
        v[f"{wl}_pred_plain_mpi_64"] = f"{serial[(wl, 64)] / predict(wl, 64, 2, 'mpi'):.2f}"
        v[f"{wl}_pred_shm_64"] = f"{serial[(wl, 64)] / predict(wl, 64, 2):.2f}"
    def measured_speedup(wl, B, P):
        """Measured strong-scaling speedup of MPI with P ranks (Serial for P = 1), or None."""
        rows = [r for r in strong if r["workload"] == wl and int(r["batch"]) == B and workers_of(r) == P
                and r["policy"] == ("serial" if P == 1 else "mpi")]
        return serial[(wl, B)] / step_seconds(rows[0]) if rows else None

    # Predicted vs measured on this node (MPI policy, strong scaling).
    with (out / "model_node.csv").open("w") as f:
        f.write("workload,batch,workers,predicted_speedup,measured_speedup\n")
        for wl in ("mlp", "cnn"):
            for B in (64, 256, 1024):
                t1 = serial[(wl, B)]
                for P in range(1, 17):
                    ms = measured_speedup(wl, B, P)
                    ms = float("nan") if ms is None else ms
                    f.write(f"{wl},{B},{P},{t1 / predict(wl, B, P):.4f},{ms:.4f}\n")
    rows = ["| workload | global batch | predicted (2 ranks) | measured MPI (2 ranks) | predicted, 16 ranks |",
            "|---|---:|---:|---:|---:|"]
    optimism = []  # predicted / measured - 1 at 2 ranks
    for wl in ("mlp", "cnn"):
        for B in (64, 256, 1024):
            t1 = serial[(wl, B)]
            ms = measured_speedup(wl, B, 2)
            if ms is not None:
                optimism.append(t1 / predict(wl, B, 2) / ms - 1)
            ms = f"{ms:.2f}" if ms is not None else "–"
            rows.append(f"| {NAMES[wl]} | {B} | {t1 / predict(wl, B, 2):.2f} | {ms} | "
                        f"{t1 / predict(wl, B, 16):.2f} |")
    v["table_model_node"] = "\n".join(rows)
    v["model_optimism"] = pct(max(optimism)) if optimism else "?"

    # Clusters of nodes like this one (2 workers each), joined by the assumed network: the node
    # sums through shared memory, then the nodes run a ring allreduce of the whole gradient.
    def net_allreduce(N, mbytes):
        return 2 * math.log2(N) * NET_ALPHA + 2 * (N - 1) / N * mbytes / NET_BANDWIDTH if N > 1 else 0.0

    def cluster_step(wl, per_node_batch, N):
        return predict(wl, per_node_batch, WORKERS_PER_NODE) + net_allreduce(N, 4 * GRAD_FLOATS[wl])

    def one_core_step(wl, B):  # the model's serial step time
        return params[wl][0] * B + params[wl][1]

    v["net_alpha_us"] = fmt(NET_ALPHA * 1e6)
    v["net_gbs"] = fmt(NET_BANDWIDTH / 1e9)
    with (out / "model_cluster.csv").open("w") as f:
        f.write("nodes,workload,per_node_batch,weak_efficiency,weak_speedup\n")
        for wl in ("mlp", "cnn"):
            for b in (128, 2048):
                t1 = one_core_step(wl, b)  # one worker, the node's batch
                for N in CLUSTER_NODES:
                    t = cluster_step(wl, b, N)
                    s = N * t1 / t
                    f.write(f"{N},{wl},{b},{s / (N * WORKERS_PER_NODE):.4f},{s:.2f}\n")
    rows = ["| workload | batch per node | " + " | ".join(f"{n} nodes" for n in (64, 256, 1024)) + " |",
            "|---|---:|---:|---:|---:|"]
    for wl in ("mlp", "cnn"):
        for b in (128, 2048):
            t1 = one_core_step(wl, b)
            cells = []
            for N in (64, 256, 1024):
                s = N * t1 / cluster_step(wl, b, N)
                cells.append(f"{s:.0f}× ({s / (N * WORKERS_PER_NODE):.2f})")
            rows.append(f"| {NAMES[wl]} | {b} | " + " | ".join(cells) + " |")
    v["table_model_cluster"] = "\n".join(rows)
    intensity = {wl: FLOPS_PER_SAMPLE[wl] / (4 * GRAD_FLOATS[wl]) for wl in ("mlp", "cnn")}
    v["cnn_vs_mlp_intensity"] = f"{intensity['cnn'] / intensity['mlp']:.0f}"
    # The batch per node at which W-MLP's step is half communication on the assumed network.
    t_net = net_allreduce(1024, 4 * GRAD_FLOATS["mlp"])
    v["mlp_net_allreduce_us"] = fmt(t_net * 1e6, 3)
    v["mlp_batch_half_comm"] = f"{WORKERS_PER_NODE * t_net / params['mlp'][0]:.0f}"


def fill_template(template, v, dest):
    text = template.read_text()
    missing = sorted(set(re.findall(r"\{\{(\w+)\}\}", text)) - set(v))
    if missing:
        fail(f"{template}: no value for {', '.join(missing)}")
    dest.write_text(re.sub(r"\{\{(\w+)\}\}", lambda m: v[m.group(1)], text))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scaling", required=True, type=pathlib.Path, help="results/scaling/<label>")
    ap.add_argument("--accuracy", default="results/accuracy", type=pathlib.Path)
    ap.add_argument("--drift", default="results/report/drift.csv", type=pathlib.Path)
    ap.add_argument("--out", default="results/report", type=pathlib.Path)
    ap.add_argument("--template", default="benchmarks/report/report.md.in", type=pathlib.Path)
    ap.add_argument("--report", default="docs/report.md", type=pathlib.Path)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    v = {}
    correctness(a.accuracy, a.out, v)
    drift(a.drift, v)
    strong, weak, serial = scaling(a.scaling, a.out, v)
    model(a.scaling, a.out, strong, weak, serial, v)
    with (a.out / "values.txt").open("w") as f:
        for k in sorted(v):
            if not k.startswith("table_"):
                f.write(f"{k} = {v[k]}\n")
    fill_template(a.template, v, a.report)
    print(f"make_report: wrote {a.report} and {a.out}/")


if __name__ == "__main__":
    main()
