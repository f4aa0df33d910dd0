// A live, self-overwriting progress line for interactive terminals; silent when stdout is a
// file or pipe so logs stay one line per epoch.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdio>

#include "pardl/metrics/timer.hpp"

namespace pardl {

class ProgressLine {
public:
    explicit ProgressLine(bool enabled, std::FILE* out = stdout)
        : out_(out), enabled_(enabled && isatty(fileno(out))) {}

    void update(std::size_t epoch, std::size_t epochs, std::size_t done, std::size_t total, double mean_loss,
                double samples_per_second) {
        if (!enabled_) return;
        const auto now = Clock::now();
        if (done < total && now - last_ < std::chrono::milliseconds(200)) return;
        last_ = now;
        constexpr int width = 30;
        const int filled = total ? static_cast<int>(width * done / total) : width;
        std::fprintf(out_, "\r  epoch %zu/%zu [", epoch, epochs);
        for (int i = 0; i < width; ++i) std::fputc(i < filled ? '#' : '.', out_);
        std::fprintf(out_, "] %3d%%  loss %.4f  %.0f samples/s ",
                     total ? static_cast<int>(100 * done / total) : 100, mean_loss, samples_per_second);
        std::fflush(out_);
        dirty_ = true;
    }
    /// Erases the line before a regular log line is printed.
    void clear() {
        if (!enabled_ || !dirty_) return;
        std::fprintf(out_, "\r%80s\r", "");
        std::fflush(out_);
        dirty_ = false;
    }

private:
    std::FILE* out_;
    bool enabled_;
    bool dirty_ = false;
    Clock::time_point last_{};
};

} // namespace pardl
