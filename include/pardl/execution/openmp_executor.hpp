// OpenMPExecutor: W threads in one parallel region per step. Each thread computes its sub-slice
// into a private gradient buffer; after a barrier the buffers are summed in worker order, with
// the gradient vector split over threads (no critical sections, no atomics, deterministic).
#pragma once

#if !defined(_OPENMP)
#error                                                                                                       \
    "pardl/execution/openmp_executor.hpp needs OpenMP: link the pardl::openmp target (or compile with -fopenmp)"
#endif

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <span>
#include <type_traits>
#include <vector>

#include "pardl/core/errors.hpp"
#include "pardl/core/subnormals.hpp"
#include "pardl/execution/executor.hpp"

namespace pardl {

class OpenMPExecutor {
public:
    /// threads == 0: OpenMP's default (OMP_NUM_THREADS, else the number of cores), at most
    /// OMP_THREAD_LIMIT.
    explicit OpenMPExecutor(std::size_t threads = 0)
        : threads_(threads
                       ? threads
                       : static_cast<std::size_t>(std::min(omp_get_max_threads(), omp_get_thread_limit()))) {
        PARDL_REQUIRE(threads_ >= 1 && threads_ <= 4096, ConfigError,
                      "OpenMP: thread count must be in [1, 4096] (got ", threads_,
                      threads ? "" : ", OpenMP's default: OMP_NUM_THREADS or the core count", ")");
        // Exactly the requested team size, every time: the partition depends on it.
        omp_set_dynamic(0);
        make_handles();
    }
    std::size_t workers() const { return threads_; }
    std::size_t threads() const { return threads_; }
    static const char* name() { return "openmp"; }

    /// Runs body(w) on every thread w of one parallel region of `team` threads, each in its
    /// caller's floating-point mode (the trainer flushes subnormals; the mode is per thread, and
    /// OpenMP's pooled threads keep whatever the last region left). The executors open their
    /// regions here alone. OpenMP gives fewer threads inside another parallel region (nesting is
    /// off by default) and under OMP_THREAD_LIMIT; the work is cut by worker, so a short team
    /// would leave workers' rows out unseen: it runs no body, every thread alike (the barriers in
    /// body stay matched), and the call throws ConfigError after the region. `policy` names the
    /// caller's policy in that message.
    template <class Body>
    static void parallel(std::size_t team, const char* policy, Body&& body) {
        std::size_t got = team;
        const SubnormalMode mode = SubnormalMode::current();
#pragma omp parallel num_threads(static_cast <int>(team))
        {
            if (const auto size = static_cast<std::size_t>(omp_get_num_threads()); size != team) {
                if (omp_get_thread_num() == 0) got = size;
            } else {
                const ScopedSubnormalMode as_caller(mode);
                body(static_cast<std::size_t>(omp_get_thread_num()));
            }
        }
        PARDL_REQUIRE(got == team, ConfigError, policy, ": OpenMP ran ", got, " thread", got == 1 ? "" : "s",
                      " of the ", team,
                      " this trainer's workers need, and nothing was computed: OpenMP gives ",
                      "fewer threads inside another parallel region (unless nesting is on: ",
                      "omp_set_max_active_levels) or under OMP_THREAD_LIMIT; ask for threads = ", got,
                      " there, or use the Serial policy");
    }

    template <class Work, class Finish = NoFinish, class Then = NoThen>
    void run(std::size_t rows, Work&& work, std::span<const std::span<float>> buffers = {},
             Finish&& finish = {}, Then&& then = {}) {
        std::exception_ptr failure;
        std::mutex failure_mutex;
        const std::size_t team = threads_;
        parallel(team, name(), [&](std::size_t w) {
            // A worker that throws still reaches the barrier, so the team never deadlocks.
            try {
                work(w, balanced_range(rows, w, team));
            } catch (...) {
                std::lock_guard lock(failure_mutex);
                if (!failure) failure = std::current_exception();
            }
#pragma omp barrier
            if (!buffers.empty() && !failure) {
                // Each thread sums (and finishes) its own slice of the gradient, and with a `then`,
                // after the whole team's finishes, passes over the same slice again while it is in
                // its cache.
                constexpr bool second_pass = !std::is_same_v<std::decay_t<Then>, NoThen>;
                const std::size_t n = buffers[0].size();
                const Range share = second_pass ? reduction_share(n, w, team) : line_share(n, w, team);
                sum_and_finish(buffers, share, w, finish);
                if constexpr (second_pass) {
#pragma omp barrier
                    if (!share.empty()) then(w, share);
                }
            }
        });
        if (failure) std::rethrow_exception(failure);
    }

    template <class Body>
    void for_chunks(std::size_t n, Body&& body) {
        const std::size_t team = threads_;
        parallel(team, name(), [&](std::size_t w) { body(line_share(n, w, team)); });
    }

    WorkerReducer* reducer(std::size_t worker) {
        return &handles_[worker];
    }
    void set_rank_reduce(std::function<void(std::span<double>)> f) {
        rank_reduce_ = std::move(f);
    }

private:
    // Called by every thread of the team inside run(): orphaned barriers bind to that region.
    // Each thread parks its values in its own slot; thread 0 (the master, the only one allowed
    // to call MPI) adds the slots in worker order and sums across ranks; then all copy back.
    void team_sum(std::size_t w, std::span<double> v) {
        const std::size_t n = v.size();
#pragma omp barrier
        if (w == 0 && slot_size_ < n) {
            slot_size_ = n;
            slots_.assign(threads_ * n, 0.0); // grows once, on the first step that needs it
        }
#pragma omp barrier
        std::copy(v.begin(), v.end(), slots_.begin() + static_cast<std::ptrdiff_t>(w * slot_size_));
#pragma omp barrier
        if (w == 0) {
            for (std::size_t i = 0; i < n; ++i) {
                double s = 0;
                for (std::size_t t = 0; t < threads_; ++t) s += slots_[t * slot_size_ + i];
                slots_[i] = s;
            }
            if (rank_reduce_) rank_reduce_(std::span<double>(slots_.data(), n));
        }
#pragma omp barrier
        std::copy_n(slots_.begin(), n, v.begin());
#pragma omp barrier
    }

    struct Handle final : WorkerReducer {
        OpenMPExecutor* exec = nullptr;
        std::size_t worker = 0;
        void sum(std::span<double> v) override { exec->team_sum(worker, v); }
    };
    void make_handles() {
        handles_.resize(threads_);
        for (std::size_t w = 0; w < threads_; ++w) {
            handles_[w].exec = this;
            handles_[w].worker = w;
        }
    }

public:
    OpenMPExecutor(const OpenMPExecutor&) = delete;
    OpenMPExecutor& operator=(const OpenMPExecutor&) = delete;

private:
    std::size_t threads_;
    std::vector<Handle> handles_;
    std::vector<double> slots_;
    std::size_t slot_size_ = 0;
    std::function<void(std::span<double>)> rank_reduce_;
};

} // namespace pardl
