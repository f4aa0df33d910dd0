// How long a cache line takes to go from one core to another and back: two threads, pinned to
// two CPUs, take turns writing one shared counter (each waits, spinning, for the other's write).
// Prints one CSV row per sample: the time since the start and the median round trip of the
// sample's batches in ns. Data-parallel training moves its gradient and parameters between the
// cores every step, so this figure bounds what two workers can gain; on a VM it may change from
// one second to the next (docs/performance.md). Linux only (it pins with sched_setaffinity).
#include <CLI/CLI.hpp>

#include <sched.h>

#include "untimed_build.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct alignas(64) Line {
    std::atomic<long> turn{0};
};

bool pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set) == 0;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"pardl core-to-core round trip of one cache line (ping-pong of two pinned threads)"};
    int cpu_a = 0, cpu_b = 1, samples = 20;
    long trips = 100000;
    int batches = 9;
    app.add_option("--cpu", cpu_a, "first CPU")->capture_default_str();
    app.add_option("--other", cpu_b, "second CPU")->capture_default_str();
    app.add_option("--samples", samples, "rows printed")->capture_default_str()->check(CLI::PositiveNumber);
    app.add_option("--trips", trips, "round trips per batch")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--batches", batches, "batches per sample (the row gives their median)")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    CLI11_PARSE(app, argc, argv);
    pardl::bench::warn_if_untimed_build(argv[0]);
    // Two threads spinning on one CPU would take turns only when the scheduler switches them:
    // hours, not seconds. Refuse that before starting.
    if (cpu_a == cpu_b) {
        std::fprintf(stderr, "bench_core_to_core: --cpu and --other must differ (both %d)\n", cpu_a);
        return 1;
    }
    if (!pin_to(cpu_a)) {
        std::fprintf(stderr, "bench_core_to_core: cannot run on CPU %d\n", cpu_a);
        return 1;
    }

    Line line;
    std::atomic<int> other_state{0}; // 1: pinned, 2: could not pin (it then returns)
    const long total = static_cast<long>(samples) * batches * trips;
    // The other thread answers every odd value with the next even one, until the last.
    std::thread other([&] {
        if (!pin_to(cpu_b)) {
            other_state = 2;
            return;
        }
        other_state = 1;
        for (long v = 1; v < 2 * total; v += 2) {
            while (line.turn.load(std::memory_order_acquire) != v) {
            }
            line.turn.store(v + 1, std::memory_order_release);
        }
    });
    while (other_state.load() == 0) std::this_thread::yield();
    if (other_state.load() == 2) {
        other.join();
        std::fprintf(stderr, "bench_core_to_core: cannot run on CPU %d\n", cpu_b);
        return 1;
    }

    std::printf("t_s,round_trip_ns\n");
    const auto start = Clock::now();
    long v = 0;
    std::vector<double> ns(static_cast<std::size_t>(batches));
    for (int s = 0; s < samples; ++s) {
        for (double& batch_ns : ns) {
            const auto t0 = Clock::now();
            for (long i = 0; i < trips; ++i) {
                line.turn.store(++v, std::memory_order_release);
                ++v;
                while (line.turn.load(std::memory_order_acquire) != v) {
                }
            }
            batch_ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / double(trips);
        }
        std::nth_element(ns.begin(), ns.begin() + batches / 2, ns.end());
        std::printf("%.3f,%.1f\n", std::chrono::duration<double>(Clock::now() - start).count(),
                    ns[batches / 2]);
        std::fflush(stdout);
    }
    other.join();
    return 0;
}
