// SerialExecutor: one worker, the calling thread. The reference every other executor must match.
#pragma once

#include <cstddef>
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

    template <class Work>
    void run(std::size_t rows, Work&& work, std::span<const std::span<float>> /*buffers*/ = {}) {
        work(std::size_t{0}, Range{0, rows});
    }

    template <class Body>
    void for_chunks(std::size_t n, Body&& body) {
        body(Range{0, n});
    }
};

} // namespace pardl
