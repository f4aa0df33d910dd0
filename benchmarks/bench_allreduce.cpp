// Allreduce benchmark: times MpiComm::allreduce_sum of float buffers from 1 KB to 16 MB (powers
// of two, plus the W-MLP and W-CNN gradients) on a shared-memory ReduceBuffer ("shm") and on a
// plain buffer ("mpi", MPI_Allreduce), and prints one CSV row per size and path on rank 0: the
// data for an alpha-beta model of the gradient exchange.
#include <CLI/CLI.hpp>

#include <pardl/comm/mpi_comm.hpp>

#include "untimed_build.hpp"
#include "workloads.hpp"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace {

struct Config {
    std::size_t min_bytes = 1024;
    std::size_t max_bytes = std::size_t{16} << 20;
    std::size_t reps = 0; // 0 = chosen per size
    std::size_t warmup = 10;
    bool header = true;
};

// The message lengths of the reference workloads' steps: the parameter buffer (padding included)
// and the tail the trainer reduces with it.
constexpr std::size_t wmlp_floats = pardl::bench::WMlp::param_count + pardl::step_tail_floats;
constexpr std::size_t wcnn_floats = pardl::bench::WCnn::param_count + pardl::step_tail_floats;

// Median over repetitions of the slowest rank's time (each repetition starts after a barrier).
double time_median(pardl::MpiComm& comm, std::span<float> v, std::size_t warmup, std::size_t reps) {
    for (std::size_t i = 0; i < warmup; ++i) comm.allreduce_sum(v);
    std::vector<double> t(reps);
    for (std::size_t i = 0; i < reps; ++i) {
        std::fill(v.begin(), v.end(),
                  1.0f); // keep the values finite and bring the buffer in cache as a step would
        comm.barrier();
        const double t0 = MPI_Wtime();
        comm.allreduce_sum(v);
        const double mine = MPI_Wtime() - t0;
        double slowest = mine;
        pardl::detail::check_mpi(MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm.native()),
                                 "MPI_Allreduce");
        t[i] = slowest;
    }
    std::nth_element(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(reps / 2), t.end());
    return t[reps / 2];
}

int run(const Config& cfg) {
    pardl::MpiComm comm;
    std::vector<std::size_t> sizes; // in floats
    for (std::size_t b = cfg.min_bytes; b <= cfg.max_bytes; b *= 2) sizes.push_back(b / sizeof(float));
    for (std::size_t n : {wmlp_floats, wcnn_floats})
        if (n * sizeof(float) >= cfg.min_bytes && n * sizeof(float) <= cfg.max_bytes) sizes.push_back(n);
    std::sort(sizes.begin(), sizes.end());
    if (comm.rank() == 0 && cfg.header) std::printf("ranks,bytes,path,seconds_median,gbytes_per_s\n");
    for (std::size_t n : sizes) {
        const std::size_t bytes = n * sizeof(float);
        // About 0.5 s of data per size and path at ~2 GB/s, between 50 and 2000 repetitions.
        const std::size_t reps =
            cfg.reps ? cfg.reps : std::clamp<std::size_t>((std::size_t{1} << 30) / bytes, 50, 2000);
        pardl::MpiComm::ReduceBuffer shared = comm.allocate(n);
        pardl::AlignedBuffer<float> plain(n);
        struct Path {
            const char* name;
            std::span<float> v;
            bool on;
        };
        const Path paths[] = {{"shm", shared.span(), shared.shared()}, {"mpi", plain.span(), true}};
        for (const Path& p : paths) {
            if (!p.on) continue; // the same on every rank
            const double s = time_median(comm, p.v, cfg.warmup, reps);
            if (comm.rank() == 0)
                std::printf("%d,%zu,%s,%.9f,%.3f\n", comm.size(), bytes, p.name, s,
                            static_cast<double>(bytes) / s * 1e-9);
            std::fflush(stdout);
        }
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"pardl allreduce benchmark: MpiComm::allreduce_sum through shared memory and MPI_Allreduce"};
    Config cfg;
    app.add_option("--min-bytes", cfg.min_bytes, "smallest message")->check(CLI::PositiveNumber);
    app.add_option("--max-bytes", cfg.max_bytes, "largest message")->check(CLI::PositiveNumber);
    app.add_option("--reps", cfg.reps, "timed repetitions per size (0 = by size)");
    app.add_option("--warmup", cfg.warmup, "untimed repetitions first");
    bool no_header = false;
    app.add_flag("--no-header", no_header, "omit the CSV header");
    CLI11_PARSE(app, argc, argv);
    cfg.header = !no_header;
    pardl::bench::warn_if_untimed_build(argv[0]);
    try {
        pardl::MpiEnvironment env(argc, argv);
        return run(cfg);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_allreduce: %s\n", e.what());
        pardl::MpiEnvironment::abort(1);
    }
}
