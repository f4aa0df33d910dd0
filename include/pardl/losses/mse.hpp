// MSE: sum over rows of the mean squared error across outputs, 1/D * sum_j (out - target)^2,
// matching PyTorch's MSELoss(reduction="mean") once the trainer divides by the row count.
#pragma once

#include <cstddef>

#include "pardl/losses/loss.hpp"

namespace pardl {

struct MSE {
    template <ShapeType Out>
    static constexpr bool accepts = true;

    static const char* name() { return "mse"; }
    static constexpr bool reads_targets = true;

    static double forward_backward(ConstMatrix out, const Targets& t, Matrix dout) {
        return run<true>(out, t, dout);
    }
    static double loss(ConstMatrix out, const Targets& t) { return run<false>(out, t, Matrix{}); }
    static std::size_t correct(ConstMatrix out, const Targets& t) {
        return detail::count_argmax_matches(out, t.labels);
    }

private:
    template <bool WithGradient>
    static double run(ConstMatrix out, const Targets& t, Matrix dout) {
        const double inv_d = 1.0 / static_cast<double>(out.cols);
        const auto scale = static_cast<float>(2.0 * inv_d);
        double total = 0.0;
        for (std::size_t r = 0; r < out.rows; ++r) {
            const float* o = out.row(r);
            const float* y = t.values.row(r);
            double row = 0.0;
            for (std::size_t j = 0; j < out.cols; ++j) {
                const float e = o[j] - y[j];
                row += static_cast<double>(e) * e;
                if constexpr (WithGradient) dout.row(r)[j] = scale * e;
            }
            total += row * inv_d;
        }
        return total;
    }
};

} // namespace pardl
