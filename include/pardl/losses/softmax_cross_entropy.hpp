// SoftmaxCrossEntropy: softmax and negative log-likelihood fused over integer labels. Fusing
// gives the simple gradient softmax(z) - onehot(y) and, with the max subtracted (log-sum-exp),
// stays finite for logits of any size.
#pragma once

#include <cmath>
#include <cstddef>

#include "pardl/losses/loss.hpp"

namespace pardl {

struct SoftmaxCrossEntropy {
    template <ShapeType Out>
    static constexpr bool accepts = Out::rank == 1 && Out::size >= 2;

    static const char* name() { return "softmax-cross-entropy"; }
    static constexpr bool reads_labels = true;

    static double forward_backward(ConstMatrix z, const Targets& t, Matrix dz) { return run<true>(z, t, dz); }
    static double loss(ConstMatrix z, const Targets& t) { return run<false>(z, t, Matrix{}); }
    static std::size_t correct(ConstMatrix z, const Targets& t) {
        return detail::count_argmax_matches(z, t.labels);
    }

private:
    template <bool WithGradient>
    static double run(ConstMatrix z, const Targets& t, Matrix dz) {
        double total = 0.0;
        for (std::size_t r = 0; r < z.rows; ++r) {
            const float* zr = z.row(r);
            float m = zr[0];
            for (std::size_t j = 1; j < z.cols; ++j) m = std::max(m, zr[j]);
            double sum = 0.0;
            for (std::size_t j = 0; j < z.cols; ++j) sum += std::exp(static_cast<double>(zr[j] - m));
            const double log_sum = std::log(sum);
            const auto label = static_cast<std::size_t>(t.labels[r]);
            total += log_sum - static_cast<double>(zr[label] - m);
            if constexpr (WithGradient) {
                float* g = dz.row(r);
                const double inv = 1.0 / sum;
                for (std::size_t j = 0; j < z.cols; ++j)
                    g[j] = static_cast<float>(std::exp(static_cast<double>(zr[j] - m)) * inv);
                g[label] -= 1.0f;
            }
        }
        return total;
    }
};

} // namespace pardl
