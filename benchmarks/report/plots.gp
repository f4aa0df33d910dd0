# The report's figures, drawn from the CSVs that make_report.py writes to results/report/.
#   gnuplot -e "data='results/report'; scaling='results/scaling/<label>'; figs='docs/figures'" \
#           benchmarks/report/plots.gp
set datafile separator ","
set terminal pngcairo size 1400,800 font "DejaVu Sans,13" linewidth 1.5
set key box opaque samplen 2 spacing 1.0 font ",10"
set grid lc rgb "#dddddd"
set style line 1 lc rgb "#000000" pt 7 ps 1.3   # serial
set style line 2 lc rgb "#7f7f7f" pt 6 ps 2.0   # serial, 2 workers in turn
set style line 3 lc rgb "#1f77b4" pt 5 ps 1.1   # openmp
set style line 4 lc rgb "#d62728" pt 9 ps 1.4   # mpi
set style line 5 lc rgb "#2ca02c" pt 3 ps 1.8   # hybrid
set style line 6 lc rgb "#9467bd" pt 13 ps 1.5  # tensor
array POL[6] = ["serial", "serial2", "openmp", "mpi", "hybrid", "tensor"]
array POLNAME[6] = ["Serial", "Serial, 2 workers in turn", "OpenMP (2 threads)", "MPI (2 ranks)", "Hybrid (2 ranks x 1 thread)", "Tensor (2 threads)"]
array POLSHORT[6] = ["Serial", "Serial, 2 in turn", "OpenMP", "MPI", "Hybrid", "Tensor"]

# ---- Figure 1: correctness --------------------------------------------------------------------
set output figs."/correctness.png"
set multiplot layout 2,2 title "Correctness: every policy learns the same model (W-MLP and W-CNN, 5 epochs, batch 64)"
set title "W-MLP: training loss per epoch"
set key right top
set xlabel "epoch"; set ylabel "mean training loss"
set xtics 1
plot for [i=1:6] data."/loss_mlp.csv" using 1:(column(POL[i])) with linespoints ls i title POLNAME[i]
set title "W-MLP: relative difference of the epoch loss"
set key right top
set logscale y; set format y "10^{%L}"
set yrange [1e-10:1e8]  # the decades above 1 hold the key
set ytics ("10^{-10}" 1e-10, "10^{-8}" 1e-8, "10^{-6}" 1e-6, "10^{-4}" 1e-4, "10^{-2}" 1e-2, "1" 1)
set ylabel "|loss - reference| / reference"
# Zero cannot be drawn on a log axis: a bit-identical loss (difference 0) sits on the bottom edge.
lg(x) = (x <= 0 ? 1.5e-10 : x)
plot 1e-4 with lines dt 2 lc rgb "#999999" title "10^{-4}", \
     for [i=2:6] data."/loss_mlp.csv" using 1:(lg(column(POL[i]."_vs_serial"))) with linespoints ls i \
        title POLSHORT[i]." vs Serial", \
     for [i=3:5] data."/loss_mlp.csv" using 1:(lg(column(POL[i]."_vs_serial2"))) with points ls i pt 2 ps 2.5 \
        title POLSHORT[i]." vs Serial, 2 in turn (0: bottom edge)"
unset yrange
set title "W-MLP: parameter drift, step by step"
set key right bottom
set logscale x
set ytics auto
set xlabel "SGD step"; set ylabel "max |p - p_{ref}| / max |p_{ref}|"
set xtics auto
set yrange [1e-10:1]
plot data."/drift.csv" using 1:(lg(column("openmp2_vs_serial1"))) with lines ls 3 lw 3 title "OpenMP (2 threads) vs Serial", \
     data."/drift.csv" using 1:(lg(column("serial2_vs_serial1"))) with lines ls 2 lw 1.5 title "Serial, 2 workers vs Serial", \
     data."/drift.csv" using 1:(lg(column("openmp2_vs_serial2"))) with lines ls 5 lw 3 title "OpenMP (2 threads) vs Serial, 2 workers (0: bottom edge)", \
     data."/drift.csv" using 1:(lg(column("tensor2_vs_serial1"))) with lines ls 6 lw 1.5 title "Tensor (2 threads) vs Serial", \
     data."/drift.csv" using 1:(lg(column("nudged_vs_serial1"))) with lines ls 4 dt 3 lw 2 title "Serial with one weight moved by 1 ulp vs Serial"
unset yrange
unset logscale y; unset logscale x; set format y "%g"
set title "W-CNN: training loss per epoch"
set key right top
set xlabel "epoch"; set ylabel "mean training loss"
set xtics 1
plot for [i in "1 3 4 5 6"] data."/loss_cnn.csv" using 1:(column(POL[int(i)])) with linespoints ls int(i) title POLNAME[int(i)]
unset multiplot

# ---- Figure 2: strong and weak scaling ------------------------------------------------
array BATCH[3] = [64, 256, 1024]
array BCOL[3] = ["#1f77b4", "#ff7f0e", "#2ca02c"]
array PPT[4] = [5, 9, 3, 13]
array PDT[4] = [1, 2, 4, 3]
array PP[4] = ["openmp", "mpi", "hybrid", "tensor"]
set output figs."/scaling.png"
set terminal pngcairo size 1800,820 font "DejaVu Sans,13"
set multiplot layout 2,4 title "Strong scaling (top: fixed global batch b) and weak scaling (bottom: fixed batch b per worker); 1 worker = Serial"
set xlabel "workers"; set xtics 1; set xrange [0.9:*]
set key left top font ",9" spacing 0.85 width 1.5
do for [mode in "strong weak"] {
    do for [wl in "mlp cnn"] {
        name = ((wl eq "mlp") ? "W-MLP" : "W-CNN").", ".mode
        np = 4
        # Colour = batch, line and point = policy; the key lists each once (NaN: key entries only).
        set title name.": speedup"; set ylabel "speedup"; set yrange [0:*]
        plot x with lines dt 2 lc rgb "#999999" title "linear", \
             for [i=1:3] NaN with lines lw 2 lc rgb BCOL[i] title "b=".BATCH[i], \
             for [j=1:np] NaN with linespoints lc rgb "#444444" dt PDT[j] pt PPT[j] ps 1.4 title PP[j], \
             for [j=1:np] for [i=1:3] data."/".mode."_series.csv" using 4:(strcol(1) eq wl && strcol(2) eq PP[j] && $3 == BATCH[i] ? $5 : NaN) \
                with linespoints lc rgb BCOL[i] dt PDT[j] pt PPT[j] ps 1.4 notitle
        set title name.": efficiency"; set ylabel "efficiency"; set yrange [0:1.1]
        unset key  # the speedup panel's key serves both
        plot 1 with lines dt 2 lc rgb "#999999" notitle, \
             for [j=1:np] for [i=1:3] data."/".mode."_series.csv" using 4:(strcol(1) eq wl && strcol(2) eq PP[j] && $3 == BATCH[i] ? $6 : NaN) \
                with linespoints lc rgb BCOL[i] dt PDT[j] pt PPT[j] ps 1.4 notitle
        set yrange [*:*]
        set key left top font ",9" spacing 0.85 width 1.5
    }
}
unset multiplot
set xrange [*:*]

# ---- Figure 4: where a step's time goes -----------------------------------------------------
set output figs."/phases.png"
set terminal pngcairo size 1400,520 font "DejaVu Sans,13" noenhanced
set multiplot layout 1,2 title "Time per step by phase at global batch 64 (rank 0, worker 0; workers in brackets)"
set style data histograms
set style histogram rowstacked
set style fill solid 0.85 border -1
set boxwidth 0.7
set key outside right top vertical
set xtics rotate by -30 nomirror
set ylabel "ms per step"
unset xlabel
set title "W-MLP"
plot for [c=2:7] "< grep -E '^\"W-MLP|^label' ".data."/phases.csv" using c:xtic(1) title columnhead(c)
set title "W-CNN"
plot for [c=2:7] "< grep -E '^\"W-CNN|^label' ".data."/phases.csv" using c:xtic(1) title columnhead(c)
unset multiplot
set style data lines
set xtics norotate

# ---- Figure 5: the performance model --------------------------------------------------------
set output figs."/model.png"
set terminal pngcairo size 1500,520 font "DejaVu Sans,12" enhanced
load data."/model_params.gp"
set multiplot layout 1,3 title "Performance model: alpha-beta allreduce fitted to measurements, speedup predicted"
set key inside left top box opaque
set title "Allreduce, 2 ranks on this machine"
set logscale xy; set format x "10^{%L}"; set format y "10^{%L}"
set xlabel "message (bytes)"; set ylabel "seconds"
plot scaling."/allreduce.csv" using 2:(strcol(3) eq "shm" ? $4 : NaN) with points pt 7 lc rgb "#1f77b4" title "shared-memory window", \
     alpha_shm + beta_shm * x with lines lc rgb "#1f77b4" title "fit", \
     scaling."/allreduce.csv" using 2:(strcol(3) eq "mpi" ? $4 : NaN) with points pt 5 lc rgb "#d62728" title "MPI\\_Allreduce", \
     alpha_mpi + beta_mpi * x with lines lc rgb "#d62728" title "fit"
unset logscale; set format x "%g"; set format y "%g"
set title "One node: predicted (lines) and measured (points), MPI"
set xlabel "workers"; set ylabel "speedup"; set xrange [1:16]; set yrange [0:16]; set xtics 2
array MWL[4] = ["mlp", "mlp", "cnn", "cnn"]
array MB[4] = [64, 1024, 64, 1024]
array MCOL[4] = ["#1f77b4", "#17becf", "#d62728", "#ff7f0e"]
plot x with lines dt 2 lc rgb "#999999" title "linear", \
     for [k=1:4] data."/model_node.csv" using 3:(strcol(1) eq MWL[k] && $2 == MB[k] ? $4 : NaN) \
        with lines lw 2 lc rgb MCOL[k] title (MWL[k] eq "mlp" ? "W-MLP" : "W-CNN")." B=".MB[k], \
     for [k=1:4] data."/model_node.csv" using 3:(strcol(1) eq MWL[k] && $2 == MB[k] ? $5 : NaN) \
        with points pt 7 ps 1.6 lc rgb MCOL[k] notitle
set title "Clusters (assumed network), weak scaling"
set logscale x 2; set xrange [1:1024]; set yrange [0:1.05]; set xtics auto
set xlabel "nodes (2 workers each)"; set ylabel "parallel efficiency"
set key inside left bottom
plot for [wl in "mlp cnn"] for [b in "128 2048"] data."/model_cluster.csv" using 1:(strcol(2) eq wl && $3 == int(b) ? $4 : NaN) \
        with linespoints lw 2 title (wl eq "mlp" ? "W-MLP" : "W-CNN")." ".b."/node"
unset multiplot
