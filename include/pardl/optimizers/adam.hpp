// Adam (Kingma & Ba) with bias correction, and AdamW (decoupled weight decay, Loshchilov &
// Hutter). Same rules as torch.optim.Adam / AdamW with amsgrad off.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "pardl/core/errors.hpp"
#include "pardl/optimizers/optimizer.hpp"
#include "pardl/tensor/buffer.hpp"
#include "pardl/tensor/vector_loop.hpp"

namespace pardl {

namespace detail {

template <bool Decoupled>
class AdamImpl {
public:
    struct Options {
        float lr = 1e-3f;
        float beta1 = 0.9f;
        float beta2 = 0.999f;
        float eps = 1e-8f;
        float weight_decay = Decoupled ? 1e-2f : 0.0f;
    };

    AdamImpl() : AdamImpl(Options{}) {}
    explicit AdamImpl(Options o) : opt_(o) {
        detail::require_learning_rate(name(), o.lr, /*zero_ok=*/false);
        PARDL_REQUIRE(o.beta1 >= 0.0f && o.beta1 < 1.0f && o.beta2 >= 0.0f && o.beta2 < 1.0f, ConfigError,
                      name(), ": betas must be in [0, 1)");
        PARDL_REQUIRE(
            std::isfinite(o.eps) && o.eps > 0.0f && std::isfinite(o.weight_decay) && o.weight_decay >= 0.0f,
            ConfigError, name(), ": eps must be a finite number > 0, weight decay a finite number >= 0 (got ",
            o.eps, " and ", o.weight_decay, ")");
    }

    void reset(std::size_t n) {
        m_.resize(n);
        v_.resize(n);
        t_ = 0;
    }
    void begin_step() {
        ++t_;
        // Bias corrections in double: (1 - beta^t) loses precision in float for small t.
        c1_ = static_cast<float>(1.0 - std::pow(static_cast<double>(opt_.beta1), static_cast<double>(t_)));
        c2_ = static_cast<float>(1.0 - std::pow(static_cast<double>(opt_.beta2), static_cast<double>(t_)));
    }

    /// torch.optim.Adam's rule, in vectors (simd::for_each_vector), with the fused multiply-adds
    /// GCC contracts the plain expressions into under -march=native. The gradient is
    /// g[i] * grad_scale, rounded before use (Optimizer: ScalesGradient), and with `limit` clamped
    /// to [-limit, limit] (ClampsGradient).
    void update(std::span<float> p, std::span<const float> g, std::size_t offset, float grad_scale = 1.0f) {
        run_update<false>(p, g, offset, grad_scale, 0.0f);
    }
    void update(std::span<float> p, std::span<const float> g, std::size_t offset, float grad_scale,
                float limit) {
        run_update<true>(p, g, offset, grad_scale, limit);
    }

    /// SavesState: the first and second moments; the step count drives the bias correction.
    std::vector<std::span<float>> state_buffers() { return {m_.span(), v_.span()}; }
    std::uint64_t steps() const { return static_cast<std::uint64_t>(t_); }
    void set_steps(std::uint64_t s) { t_ = static_cast<long long>(s); }

    float learning_rate() const { return opt_.lr; }
    void set_learning_rate(float lr) {
        detail::require_learning_rate(name(), lr, /*zero_ok=*/true);
        opt_.lr = lr;
    }
    const Options& options() const { return opt_; }
    static std::string name() { return Decoupled ? "adamw" : "adam"; }
    /// OptimizerSettings.
    std::vector<std::pair<std::string, std::string>> settings() const {
        return {{"beta1", setting_text(opt_.beta1)},
                {"beta2", setting_text(opt_.beta2)},
                {"eps", setting_text(opt_.eps)},
                {"weight decay", setting_text(opt_.weight_decay)}};
    }

private:
    template <bool Clamp>
    void run_update(std::span<float> p, std::span<const float> g, std::size_t offset, float grad_scale,
                    float limit) {
        using simd::FloatVector;
        const FloatVector b1 = simd::broadcast(opt_.beta1), b2 = simd::broadcast(opt_.beta2),
                          one_minus_b1 = simd::broadcast(1.0f - opt_.beta1),
                          one_minus_b2 = simd::broadcast(1.0f - opt_.beta2), eps = simd::broadcast(opt_.eps),
                          wd = simd::broadcast(opt_.weight_decay),
                          lr_wd = simd::broadcast(opt_.lr * opt_.weight_decay),
                          step = simd::broadcast(opt_.lr / c1_),
                          inv_sqrt_c2 = simd::broadcast(1.0f / std::sqrt(c2_)),
                          scale = simd::broadcast(grad_scale), hi = simd::broadcast(limit),
                          lo = simd::broadcast(-limit);
        simd::for_each_vector(
            p.size(),
            [&](FloatVector& pi, const FloatVector& grad, FloatVector& mi, FloatVector& vi) {
                FloatVector gi = grad * scale;
                if constexpr (Clamp) gi = simd::clamp(gi, lo, hi);
                if constexpr (Decoupled)
                    pi = simd::fnma(lr_wd, pi, pi);
                else
                    gi = simd::fma(wd, pi, gi);
                mi = simd::fma(b1, mi, one_minus_b1 * gi);
                vi = simd::fma(b2, vi, one_minus_b2 * gi * gi);
                pi = pi - step * mi / simd::fma(simd::sqrt(vi), inv_sqrt_c2, eps);
            },
            p.data(), g.data(), m_.data() + offset, v_.data() + offset);
    }

    Options opt_;
    AlignedBuffer<float> m_, v_;
    long long t_ = 0;
    float c1_ = 1.0f, c2_ = 1.0f;
};

} // namespace detail

/// Adam; weight_decay is classic L2 (added to the gradient).
using Adam = detail::AdamImpl<false>;
/// AdamW; weight_decay is decoupled (applied to the parameters directly).
using AdamW = detail::AdamImpl<true>;

} // namespace pardl
