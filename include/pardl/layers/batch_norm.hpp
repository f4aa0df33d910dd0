// BatchNorm<Mode>: batch normalisation per channel of C x H x W inputs (as BatchNorm2d) or per
// feature of flat inputs (as BatchNorm1d), with PyTorch's running statistics. Synchronized mode
// takes batch statistics over the global batch through StepContext::reducer. Models BoundLayer.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>

#include "pardl/layers/layer.hpp"
#include "pardl/tensor/buffer.hpp"

namespace pardl {

namespace detail {
/// Sums of a[i] and a[i] * b[i] over N values, in double, in 8 independent partial sums: one
/// running sum is a serial chain of dependent adds that the compiler may not reorder. N is a
/// template argument so that per-feature (N = 1) calls cost nothing extra.
template <std::size_t N>
inline void sum_and_dot(const float* a, const float* b, double& sum, double& dot) noexcept {
    constexpr std::size_t lanes = N >= 8 ? 8 : 1;
    constexpr std::size_t body = N / lanes * lanes;
    double s[lanes] = {}, d[lanes] = {};
    for (std::size_t i = 0; i < body; i += lanes)
        for (std::size_t l = 0; l < lanes; ++l) {
            s[l] += a[i + l];
            d[l] += static_cast<double>(a[i + l]) * b[i + l];
        }
    for (std::size_t i = body; i < N; ++i) {
        s[0] += a[i];
        d[0] += static_cast<double>(a[i]) * b[i];
    }
    sum = dot = 0;
    for (std::size_t l = 0; l < lanes; ++l) {
        sum += s[l];
        dot += d[l];
    }
}
} // namespace detail

/// synchronized: statistics over the global batch (every worker of the step, all ranks), so the
/// result is the serial one whatever the partition. local: statistics over each worker's own
/// rows, which is cheaper but makes the model depend on the partition.
enum class BatchNormMode { synchronized, local };

template <BatchNormMode Mode = BatchNormMode::synchronized>
struct BatchNorm : LayerSpecBase {
    static constexpr double momentum = 0.1; ///< running = (1 - momentum) running + momentum batch
    static constexpr double eps = 1e-5;
    static constexpr bool synchronized = Mode == BatchNormMode::synchronized;

    template <ShapeType In>
    static constexpr bool accepts = In::rank == 3 || In::rank == 1;
    /// The compile error of an input this layer rejects: Sequential instantiates it then, so that
    /// the compiler prints this sentence (a static_assert takes a literal only).
    template <class In>
    struct reject_input {
        static_assert(accepts<In>, "BatchNorm needs a C x H x W (per-channel) or a flat (per-feature) input");
    };

    static std::string name() { return synchronized ? "BatchNorm" : "LocalBatchNorm"; }

    template <ShapeType In>
    struct bind {
        /// Channels are the leading dimension; each holds `spatial` contiguous values per sample.
        static constexpr std::size_t C = In::dims[0];
        static constexpr std::size_t spatial = In::size / C;
        using input_shape = In;
        using output_shape = In;
        /// gamma[C] then beta[C].
        static constexpr std::size_t param_count = 2 * C;
        static constexpr bool overwrites_grads = true;
        static constexpr bool backward_reads_output = false; ///< recomputes x-hat from x
        /// running_mean[C] then running_var[C].
        static constexpr std::size_t state_count = 2 * C;

        static std::string name() { return BatchNorm::name(); }

        explicit bind(std::size_t) : stats_(2 * C + 1), mean_(C), invstd_(C) {}

        static void initialize(std::span<float> params, std::span<float> state, Rng&) {
            std::fill_n(params.begin(), C, 1.0f);
            std::fill(params.begin() + C, params.end(), 0.0f);
            if (state.empty()) return;
            std::fill_n(state.begin(), C, 0.0f);
            std::fill(state.begin() + C, state.end(), 1.0f);
        }

        void forward(const LayerSlots& s, ConstMatrix x, Matrix y, const StepContext& ctx) {
            if (ctx.training)
                batch_statistics(s, x, ctx);
            else
                running_statistics(s);
            const float* gamma = s.params.data();
            const float* beta = gamma + C;
            for (std::size_t r = 0; r < x.rows; ++r)
                for (std::size_t c = 0; c < C; ++c) {
                    const float* xc = x.row(r) + c * spatial;
                    float* yc = y.row(r) + c * spatial;
                    const float m = mean_[c], a = gamma[c] * invstd_[c], b = beta[c];
                    for (std::size_t p = 0; p < spatial; ++p) yc[p] = a * (xc[p] - m) + b;
                }
        }

        void backward(const LayerSlots& s, ConstMatrix x, ConstMatrix, ConstMatrix dy, Matrix dx,
                      const StepContext& ctx) {
            // stats_[c] = sum dy, stats_[C + c] = sum dy * xhat over this worker's rows.
            std::fill(stats_.begin(), stats_.end(), 0.0);
            for (std::size_t r = 0; r < x.rows; ++r)
                for (std::size_t c = 0; c < C; ++c) {
                    const float* xc = x.row(r) + c * spatial;
                    const float* gc = dy.row(r) + c * spatial;
                    // sum dy * xhat = invstd * (sum dy * x - mean * sum dy), from plain sums.
                    double sg, sgx;
                    detail::sum_and_dot<spatial>(gc, xc, sg, sgx);
                    stats_[c] += sg;
                    stats_[C + c] += (sgx - mean_[c] * sg) * invstd_[c];
                }
            // The worker's own sums: the trainer's gradient reduction adds them over workers.
            if (!s.grads.empty()) {
                float* dgamma = s.grads.data();
                float* dbeta = dgamma + C;
                // Stale values may be anything, NaN included: overwriting never reads them.
                const bool add = !ctx.overwrite_grads;
                for (std::size_t c = 0; c < C; ++c) {
                    dgamma[c] = (add ? dgamma[c] : 0.0f) + static_cast<float>(stats_[C + c]);
                    dbeta[c] = (add ? dbeta[c] : 0.0f) + static_cast<float>(stats_[c]);
                }
            }
            const float* gamma = s.params.data();
            if (!ctx.training) {
                // Running statistics are constants: the layer is affine in x.
                if (dx.empty()) return;
                for (std::size_t r = 0; r < x.rows; ++r)
                    for (std::size_t c = 0; c < C; ++c) {
                        const float* gc = dy.row(r) + c * spatial;
                        float* dc = dx.row(r) + c * spatial;
                        const float k = gamma[c] * invstd_[c];
                        for (std::size_t p = 0; p < spatial; ++p) dc[p] = k * gc[p];
                    }
                return;
            }
            // The collective runs even when this worker needs no dx, so that calls stay matched.
            if constexpr (synchronized)
                if (ctx.reducer != nullptr) ctx.reducer->sum(std::span<double>(stats_.data(), 2 * C));
            if (dx.empty() || count_ == 0) return;
            for (std::size_t c = 0; c < C; ++c) {
                stats_[c] /= count_;
                stats_[C + c] /= count_;
            }
            for (std::size_t r = 0; r < x.rows; ++r)
                for (std::size_t c = 0; c < C; ++c) {
                    const float* xc = x.row(r) + c * spatial;
                    const float* gc = dy.row(r) + c * spatial;
                    float* dc = dx.row(r) + c * spatial;
                    const float m = mean_[c], is = invstd_[c], k = gamma[c] * is;
                    const auto mean_g = static_cast<float>(stats_[c]),
                               mean_gx = static_cast<float>(stats_[C + c]);
                    for (std::size_t p = 0; p < spatial; ++p)
                        dc[p] = k * (gc[p] - mean_g - (xc[p] - m) * is * mean_gx);
                }
        }

    private:
        /// Mean and inverse deviation of the (global, in synchronized mode) batch; updates the
        /// running statistics on the one worker per process that owns them.
        void batch_statistics(const LayerSlots& s, ConstMatrix x, const StepContext& ctx) {
            std::fill(stats_.begin(), stats_.end(), 0.0);
            for (std::size_t r = 0; r < x.rows; ++r)
                for (std::size_t c = 0; c < C; ++c) {
                    const float* xc = x.row(r) + c * spatial;
                    double sum, sumsq;
                    detail::sum_and_dot<spatial>(xc, xc, sum, sumsq);
                    stats_[c] += sum;
                    stats_[C + c] += sumsq;
                }
            stats_[2 * C] = static_cast<double>(x.rows * spatial);
            // Workers with no rows still take part with zeros: the collective must stay matched.
            if constexpr (synchronized)
                if (ctx.reducer != nullptr) ctx.reducer->sum(std::span<double>(stats_.data(), 2 * C + 1));
            count_ = stats_[2 * C];
            if (count_ == 0) {
                std::fill(mean_.begin(), mean_.end(), 0.0f);
                std::fill(invstd_.begin(), invstd_.end(), 1.0f);
                return;
            }
            const bool update = ctx.updates_state && !s.state.empty();
            for (std::size_t c = 0; c < C; ++c) {
                const double mean = stats_[c] / count_;
                const double var = std::max(stats_[C + c] / count_ - mean * mean, 0.0); // biased
                mean_[c] = static_cast<float>(mean);
                invstd_[c] = static_cast<float>(1.0 / std::sqrt(var + eps));
                if (update) {
                    // PyTorch keeps the unbiased variance (it has none for a single value).
                    const double unbiased = count_ > 1 ? var * count_ / (count_ - 1) : var;
                    float& rm = s.state[c];
                    float& rv = s.state[C + c];
                    rm = static_cast<float>((1 - momentum) * rm + momentum * mean);
                    rv = static_cast<float>((1 - momentum) * rv + momentum * unbiased);
                }
            }
        }

        void running_statistics(const LayerSlots& s) {
            count_ = 0;
            for (std::size_t c = 0; c < C; ++c) {
                const double m = s.state.empty() ? 0.0 : s.state[c];
                const double v = s.state.empty() ? 1.0 : s.state[C + c];
                mean_[c] = static_cast<float>(m);
                invstd_[c] = static_cast<float>(1.0 / std::sqrt(v + eps));
            }
        }

        AlignedBuffer<double> stats_; ///< per-channel sums (+ count) that the reducer combines
        AlignedBuffer<float> mean_, invstd_;
        double count_ = 0; ///< values per channel in the (global) batch of the last forward
    };
};

using SyncBatchNorm = BatchNorm<BatchNormMode::synchronized>;
using LocalBatchNorm = BatchNorm<BatchNormMode::local>;

} // namespace pardl
