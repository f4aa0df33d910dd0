// Wall-clock timing of the phases of a training step, so runs can say where the time goes
// (data, forward, backward, reduce_workers, allreduce, update).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <string_view>

namespace pardl {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

enum class Phase : std::size_t { data, forward, backward, reduce_workers, allreduce, update, count_ };

inline constexpr std::array<std::string_view, static_cast<std::size_t>(Phase::count_)> phase_names{
    "data", "forward", "backward", "reduce_workers", "allreduce", "update"};

/// Seconds spent per phase, accumulated over steps (measured on this rank's first worker).
struct PhaseTimes {
    std::array<double, static_cast<std::size_t>(Phase::count_)> seconds{};
    double& operator[](Phase p) { return seconds[static_cast<std::size_t>(p)]; }
    double operator[](Phase p) const { return seconds[static_cast<std::size_t>(p)]; }
    double total() const {
        double s = 0;
        for (double v : seconds) s += v;
        return s;
    }
    PhaseTimes& operator+=(const PhaseTimes& o) {
        for (std::size_t i = 0; i < seconds.size(); ++i) seconds[i] += o.seconds[i];
        return *this;
    }
};

} // namespace pardl
