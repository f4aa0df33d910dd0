// SerialExecutor: the calling thread only. The reference every other executor must match.
//
// It normally runs one worker. Given W > 1 it runs W workers one after another on the same
// thread and sums their buffers exactly as a W-thread team would, so a serial run reproduces the
// arithmetic of any W-worker run bit for bit: the only thing a parallel run changes is the order
// of the floating-point sums over the batch, and this isolates that effect (docs/report.md).
#pragma once

#include <cstddef>
#include <functional>
#include <span>

#include "pardl/core/errors.hpp"
#include "pardl/execution/executor.hpp"

namespace pardl {

class SerialExecutor {
public:
    /// workers == 0 means 1.
    explicit SerialExecutor(std::size_t workers = 1) : workers_(workers ? workers : 1) {
        // Serial's executor and each MPI rank's: the message names what both mean by workers.
        PARDL_REQUIRE(
            workers_ <= 4096, ConfigError,
            "workers taken in turn on one thread (Serial's, or each MPI rank's) must be at most 4096 (got ",
            workers, ")");
        reducer_.workers = workers_;
    }
    std::size_t workers() const { return workers_; }
    static constexpr std::size_t threads() { return 1; }
    static const char* name() { return "serial"; }

    template <class Work, class Finish = NoFinish, class Then = NoThen>
    void run(std::size_t rows, Work&& work, std::span<const std::span<float>> buffers = {},
             Finish&& finish = {}, Then&& then = {}) {
        for (std::size_t w = 0; w < workers_; ++w) work(w, balanced_range(rows, w, workers_));
        if (buffers.empty()) return;
        const Range all{0, buffers[0].size()};
        sum_and_finish(buffers, all, 0, finish);
        if (!all.empty()) then(0, all);
    }

    template <class Body>
    void for_chunks(std::size_t n, Body&& body) {
        body(Range{0, n});
    }

    /// One worker: the team sum is the identity and only the ranks remain to be summed. Workers
    /// taken in turn cannot meet inside a step, so layers that synchronise them (BatchNorm) are
    /// refused with more than one.
    WorkerReducer* reducer(std::size_t /*worker*/) { return &reducer_; }
    void set_rank_reduce(std::function<void(std::span<double>)> f) { reducer_.rank_reduce = std::move(f); }

private:
    struct Reducer final : WorkerReducer {
        std::size_t workers = 1;
        std::function<void(std::span<double>)> rank_reduce;
        void sum(std::span<double> v) override {
            PARDL_REQUIRE(workers == 1, ConfigError, "serial: ", workers,
                          " workers taken in turn cannot synchronise inside a step (synchronized "
                          "BatchNorm); use one worker, LocalBatchNorm, or the OpenMP policy");
            if (rank_reduce) rank_reduce(v);
        }
    };
    std::size_t workers_;
    Reducer reducer_;
};

} // namespace pardl
