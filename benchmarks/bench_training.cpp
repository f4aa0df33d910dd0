// End-to-end training benchmark: times training steps of a reference workload under the policy
// this binary was built for (PARDL_POLICY) and prints one CSV row with s/epoch, samples/s,
// GFLOP/s and % of the measured FMA peak of the workers used; with --baseline (the serial
// s/epoch) it adds speedup and parallel efficiency. benchmarks/run_benchmarks.sh (its training
// part) and benchmarks/compare_commits.sh drive it.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <thread>

#include "peak_flops.hpp"
#include "untimed_build.hpp"
#include "workloads.hpp"

#ifndef PARDL_POLICY
#define PARDL_POLICY Serial
#endif
#ifndef PARDL_POLICY_NAME
#define PARDL_POLICY_NAME "serial"
#endif

namespace {

struct Config {
    std::string workload = "mlp";
    std::string data;
    std::size_t batch = 64;
    std::size_t steps = 0; // 0 = one epoch of the training set
    std::size_t warmup = 20;
    std::size_t threads = 0;
    double baseline = 0;
    bool header = false;
    bool keep_subnormals = false;
    float clip_grad_norm = 0;
    float clip_grad_value = 0;
    std::uint64_t seed = 42;
};

template <class Model>
int run(const Config& cfg) {
    using namespace pardl;
    using Policy = pardl::PARDL_POLICY;
    using Env = typename Policy::communicator::Environment;
    Dataset data = cfg.data.empty() ? Dataset{} : load_fashion_mnist(cfg.data, true);
    if (data.empty())
        data = make_images(60000, 1, 28, 28, 10, cfg.seed); // same shape and cost as Fashion-MNIST
    TrainerOptions o;
    o.batch = cfg.batch;
    o.seed = cfg.seed;
    o.threads = cfg.threads;
    o.log = false;
    o.flush_subnormals = !cfg.keep_subnormals;
    o.clip_grad_norm = cfg.clip_grad_norm;
    o.clip_grad_value = cfg.clip_grad_value;
    Trainer<Model, SoftmaxCrossEntropy, SGD, Policy> trainer(SGD({.lr = 0.01f, .momentum = 0.9f}), o);
    // Cores in use: Serial's workers taken in turn share one.
    const std::size_t cores_used = trainer.threads() * static_cast<std::size_t>(trainer.ranks());

    // Peak of one core, measured on rank 0 while the others wait (so they do not share its core).
    double peak = 0;
    if (trainer.rank() == 0) peak = bench::measure_peak_gflops_per_core();
    peak = trainer.communicator().sum(peak);

    BatchLoader loader(data, cfg.batch, cfg.seed);
    const std::size_t per_epoch = loader.batches_per_epoch();
    const std::size_t steps = cfg.steps ? cfg.steps : per_epoch;
    std::size_t epoch = 0, b = per_epoch;
    auto next = [&] {
        if (b == per_epoch) {
            loader.start_epoch(++epoch);
            b = 0;
        }
        return loader.batch_indices(b++);
    };
    for (std::size_t s = 0; s < cfg.warmup; ++s) trainer.step(data, next());
    trainer.communicator().barrier();
    trainer.reset_phase_times();
    const auto t0 = Clock::now();
    std::size_t samples = 0;
    for (std::size_t s = 0; s < steps; ++s) samples += trainer.step(data, next()).samples;
    trainer.communicator().barrier();
    const double seconds = seconds_since(t0);
    if (trainer.rank() != 0) return 0;

    const double samples_per_s = static_cast<double>(samples) / seconds;
    const double s_per_epoch = static_cast<double>(data.rows) / samples_per_s;
    const double gflops = samples_per_s * static_cast<double>(Model::training_flops_per_sample) * 1e-9;
    const double pct_peak = 100.0 * gflops / (peak * static_cast<double>(cores_used));
    if (cfg.header)
        std::printf("workload,policy,ranks,threads,batch,steps,seconds,s_per_epoch,samples_per_s,gflops,"
                    "peak_gflops_per_core,pct_peak,speedup,efficiency");
    if (cfg.header) {
        for (auto name : phase_names) std::printf(",%.*s_s", static_cast<int>(name.size()), name.data());
        std::printf("\n");
    }
    const double speedup = cfg.baseline > 0 ? cfg.baseline / s_per_epoch : 0.0;
    std::printf("%s,%s,%d,%zu,%zu,%zu,%.4f,%.4f,%.1f,%.2f,%.2f,%.1f,%.3f,%.3f", cfg.workload.c_str(),
                PARDL_POLICY_NAME, trainer.ranks(), trainer.threads(), cfg.batch, steps, seconds, s_per_epoch,
                samples_per_s, gflops, peak, pct_peak, speedup, speedup / static_cast<double>(cores_used));
    const PhaseTimes& ph = trainer.phase_times();
    for (double v : ph.seconds) std::printf(",%.4f", v);
    std::printf("\n");
    (void)sizeof(Env);
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"pardl end-to-end training benchmark (policy: " PARDL_POLICY_NAME ")"};
    Config cfg;
    app.add_option("--workload", cfg.workload, "mlp (W-MLP) or cnn (W-CNN)")
        ->check(CLI::IsMember({"mlp", "cnn"}));
    app.add_option("--data", cfg.data, "Fashion-MNIST directory (default: synthetic data of the same shape)");
    app.add_option("--batch", cfg.batch, "global batch size")->check(CLI::PositiveNumber);
    app.add_option("--steps", cfg.steps, "timed steps (0 = one epoch)");
    app.add_option("--warmup", cfg.warmup, "untimed steps first");
    app.add_option("--threads", cfg.threads, "threads per rank (0 = default)");
    app.add_option("--baseline", cfg.baseline, "serial s/epoch, for speedup and efficiency");
    app.add_flag("--header", cfg.header, "print the CSV header first");
    app.add_flag("--keep-subnormals", cfg.keep_subnormals,
                 "compute with IEEE subnormals instead of flushing them (TrainerOptions::flush_subnormals = "
                 "false), to measure what flushing saves");
    app.add_option("--clip-grad-norm", cfg.clip_grad_norm,
                   "clip the gradient by global norm (TrainerOptions::clip_grad_norm), to measure what "
                   "clipping's own update path costs (1e30: its path, no step clipped; 0: no clipping)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--clip-grad-value", cfg.clip_grad_value,
                   "clip the gradient by value (TrainerOptions::clip_grad_value), to measure what the clamp "
                   "inside the update costs (1e30: the clamp, no element clipped; 0: no clipping)")
        ->check(CLI::NonNegativeNumber);
    CLI11_PARSE(app, argc, argv);
    pardl::bench::warn_if_untimed_build(argv[0]);
    using Env = typename pardl::PARDL_POLICY::communicator::Environment;
    try {
        Env env(argc, argv);
        // A tensor-parallel team splits Dense layers by inputs and shares W-CNN's convolutions,
        // the row-wise prefix before its first Dense, by rows (Sequential::team_prefix).
        if (cfg.workload == "cnn") return run<pardl::bench::WCnn>(cfg);
        return run<pardl::bench::WMlp>(cfg);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_training: %s\n", e.what());
        Env::abort(1);
    }
}
