// TensorParallelExecutor: model (tensor) parallelism inside one process. The W threads of a team
// all work on the whole batch, and each computes its own share of every layer: a Dense layer's
// share of inputs (a block of whole rows of W, which only that thread ever reads, writes the
// gradient of and updates; see Sequential::forward_team), an elementwise layer's columns, any
// other layer's rows; convolutions before the first Dense (Sequential::team_prefix) each thread
// runs on its own rows, and the team sums their small gradient. What crosses between the cores
// per step is then parts of the activations and their gradients (about 100 KB for W-MLP at batch
// 64, 0.54 MB for W-CNN), not the gradient and the parameters that data parallelism exchanges
// (about 1 MB and 3.3 MB; see docs/performance.md). Evaluation, which has no gradients, is plain
// data parallelism.
#pragma once

#if !defined(_OPENMP)
#error                                                                                                       \
    "pardl/execution/tensor_parallel_executor.hpp needs OpenMP: link the pardl::openmp target (or compile with -fopenmp)"
#endif

#include <omp.h>

#include <atomic>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <span>

#include "pardl/execution/executor.hpp"
#include "pardl/execution/openmp_executor.hpp"

namespace pardl {

/// One thread of a tensor-parallel team, as the team step sees it: its index, the team size, and
/// the barrier between phases. A phase that throws marks the team failed; the later phases of
/// every thread are then skipped (the barriers are still met, so nobody waits forever) and the
/// executor rethrows the first exception after the region.
class TeamMember {
public:
    std::size_t index() const { return index_; }
    std::size_t size() const { return size_; }
    /// Runs fn() unless a phase of any thread has failed, then waits for the whole team.
    template <class Fn>
    void phase(Fn&& fn) {
        run(fn);
        sync();
    }
    /// Runs fn() unless a phase has failed; no barrier (the caller knows nobody reads its result
    /// before a later sync).
    template <class Fn>
    void run(Fn&& fn) {
        if (failed()) return;
        try {
            fn();
        } catch (...) {
            shared_->fail(std::current_exception());
        }
    }
    void sync() const {
#pragma omp barrier
    }
    bool failed() const {
        return shared_->failed.load(std::memory_order_relaxed);
    }

private:
    friend class TensorParallelExecutor;
    /// What the members of one region share: the first exception, and a flag every phase reads
    /// (a lock only when a phase fails; the barriers order the flag between phases).
    struct Shared {
        std::atomic<bool> failed{false};
        std::mutex mutex;
        std::exception_ptr first;
        void fail(std::exception_ptr e) {
            std::lock_guard lock(mutex);
            if (!first) first = std::move(e);
            failed.store(true, std::memory_order_relaxed);
        }
    };
    TeamMember(std::size_t index, std::size_t size, Shared* shared)
        : index_(index), size_(size), shared_(shared) {}
    std::size_t index_, size_;
    Shared* shared_;
};

class TensorParallelExecutor {
public:
    /// Tells the trainer to run the step as a team (Trainer::step) instead of splitting the batch.
    static constexpr bool splits_layers = true;

    /// threads == 0: OpenMP's default (OMP_NUM_THREADS, else the number of cores).
    explicit TensorParallelExecutor(std::size_t threads = 0) : rows_(threads) {}
    std::size_t workers() const { return rows_.workers(); }
    std::size_t threads() const { return rows_.threads(); }
    static const char* name() { return "tensor"; }

    /// Runs body(member) on every thread of the team in one parallel region; rethrows the first
    /// exception a phase threw.
    template <class Body>
    void run_team(Body&& body) {
        TeamMember::Shared shared;
        const std::size_t team = threads();
        OpenMPExecutor::parallel(team, name(), [&](std::size_t w) {
            TeamMember member(w, team, &shared);
            body(member);
        });
        if (shared.first) std::rethrow_exception(shared.first);
    }

    // Evaluation and the update after a cross-rank allreduce: data parallelism over rows and
    // chunks, exactly as the OpenMP executor (see Executor in executor.hpp).
    template <class Work, class Finish = NoFinish, class Then = NoThen>
    void run(std::size_t rows, Work&& work, std::span<const std::span<float>> buffers = {},
             Finish&& finish = {}, Then&& then = {}) {
        rows_.run(rows, std::forward<Work>(work), buffers, std::forward<Finish>(finish),
                  std::forward<Then>(then));
    }
    template <class Body>
    void for_chunks(std::size_t n, Body&& body) {
        rows_.for_chunks(n, std::forward<Body>(body));
    }
    WorkerReducer* reducer(std::size_t worker) { return rows_.reducer(worker); }
    void set_rank_reduce(std::function<void(std::span<double>)> f) { rows_.set_rank_reduce(std::move(f)); }

private:
    OpenMPExecutor rows_;
};

} // namespace pardl
