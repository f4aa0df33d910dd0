// SerialExecutor: one worker, the calling thread. The reference every other executor must match.
#pragma once

#include <cstddef>
#include <functional>
#include <span>

#include "pardl/core/errors.hpp"
#include "pardl/execution/executor.hpp"

namespace pardl {

class SerialExecutor {
public:
    explicit SerialExecutor(std::size_t threads = 1) {
        PARDL_REQUIRE(threads <= 1, ConfigError, "the serial policy runs one thread (asked for ", threads,
                      "); use the OpenMP or Hybrid policy for more");
    }
    static constexpr std::size_t workers() { return 1; }
    static const char* name() { return "serial"; }

    template <class Work, class Finish = NoFinish>
    void run(std::size_t rows, Work&& work, std::span<const std::span<float>> buffers = {},
             Finish&& finish = {}) {
        work(std::size_t{0}, Range{0, rows});
        if (!buffers.empty()) finish(Range{0, buffers[0].size()});
    }

    template <class Body>
    void for_chunks(std::size_t n, Body&& body) {
        body(Range{0, n});
    }

    /// With one worker the team sum is the identity; only the ranks remain to be summed.
    WorkerReducer* reducer(std::size_t /*worker*/) { return &reducer_; }
    void set_rank_reduce(std::function<void(std::span<double>)> f) { reducer_.rank_reduce = std::move(f); }

private:
    struct Reducer final : WorkerReducer {
        std::function<void(std::span<double>)> rank_reduce;
        void sum(std::span<double> v) override {
            if (rank_reduce) rank_reduce(v);
        }
    };
    Reducer reducer_;
};

} // namespace pardl
