// SGD with optional momentum, Nesterov momentum and L2 weight decay, with PyTorch's update rule
// (buffer = momentum * buffer + g; no dampening), so results can be compared with torch.optim.SGD.
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

class SGD {
public:
    struct Options {
        float lr = 0.01f;
        float momentum = 0.0f;
        bool nesterov = false;
        float weight_decay = 0.0f;
    };

    SGD() : SGD(Options{}) {}
    explicit SGD(Options o) : opt_(o) {
        detail::require_learning_rate("SGD", o.lr, /*zero_ok=*/false);
        PARDL_REQUIRE(o.momentum >= 0.0f && o.momentum < 1.0f, ConfigError,
                      "SGD: momentum must be in [0, 1) (got ", o.momentum, ")");
        PARDL_REQUIRE(!o.nesterov || o.momentum > 0.0f, ConfigError, "SGD: Nesterov needs momentum > 0");
        PARDL_REQUIRE(std::isfinite(o.weight_decay) && o.weight_decay >= 0.0f, ConfigError,
                      "SGD: weight decay must be a finite number >= 0 (got ", o.weight_decay, ")");
    }

    void reset(std::size_t n) {
        if (opt_.momentum > 0.0f) velocity_.resize(n);
    }
    void begin_step() { ++steps_; }

    /// Fused multiply-adds in the order GCC contracts the plain expressions into under
    /// -march=native: v = (mu v + g) + wd p, p = p - lr v (torch.optim.SGD's rule), in vectors
    /// (simd::for_each_vector) so that the update streams at memory speed at any -O level. The
    /// gradient is g[i] * grad_scale, rounded before use (Optimizer: ScalesGradient), and with
    /// `limit` clamped to [-limit, limit] (ClampsGradient).
    void update(std::span<float> p, std::span<const float> g, std::size_t offset, float grad_scale = 1.0f) {
        run_update<false>(p, g, offset, grad_scale, 0.0f);
    }
    void update(std::span<float> p, std::span<const float> g, std::size_t offset, float grad_scale,
                float limit) {
        run_update<true>(p, g, offset, grad_scale, limit);
    }

    /// SavesState: the momentum buffer, where there is momentum.
    std::vector<std::span<float>> state_buffers() {
        if (velocity_.empty()) return {};
        return {velocity_.span()};
    }
    std::uint64_t steps() const { return steps_; }
    void set_steps(std::uint64_t s) { steps_ = s; }

    float learning_rate() const { return opt_.lr; }
    void set_learning_rate(float lr) {
        detail::require_learning_rate("SGD", lr, /*zero_ok=*/true);
        opt_.lr = lr;
    }
    const Options& options() const { return opt_; }
    std::string name() const { return opt_.nesterov ? "sgd-nesterov" : "sgd"; }
    /// OptimizerSettings (Nesterov is in the name).
    std::vector<std::pair<std::string, std::string>> settings() const {
        return {{"momentum", setting_text(opt_.momentum)}, {"weight decay", setting_text(opt_.weight_decay)}};
    }

private:
    template <bool Clamp>
    void run_update(std::span<float> p, std::span<const float> g, std::size_t offset, float grad_scale,
                    float limit) {
        using simd::FloatVector;
        const FloatVector lr = simd::broadcast(opt_.lr), mu = simd::broadcast(opt_.momentum),
                          wd = simd::broadcast(opt_.weight_decay), scale = simd::broadcast(grad_scale),
                          hi = simd::broadcast(limit), lo = simd::broadcast(-limit);
        // The gradient as the rule takes it: scaled, rounded, and clamped where asked.
        const auto gradient = [&](const FloatVector& grad) {
            if constexpr (Clamp)
                return simd::clamp(grad * scale, lo, hi);
            else
                return grad * scale;
        };
        float* v = velocity_.empty() ? nullptr : velocity_.data() + offset;
        const std::size_t n = p.size();
        if (!v) {
            simd::for_each_vector(
                n,
                [&](FloatVector& pi, const FloatVector& grad) {
                    pi = simd::fnma(lr, simd::fma(wd, pi, gradient(grad)), pi);
                },
                p.data(), g.data());
        } else if (opt_.nesterov) {
            simd::for_each_vector(
                n,
                [&](FloatVector& pi, const FloatVector& grad, FloatVector& vi) {
                    const FloatVector d = simd::fma(wd, pi, gradient(grad));
                    vi = simd::fma(mu, vi, d);
                    pi = simd::fnma(lr, simd::fma(mu, vi, d), pi);
                },
                p.data(), g.data(), v);
        } else {
            simd::for_each_vector(
                n,
                [&](FloatVector& pi, const FloatVector& grad, FloatVector& vi) {
                    vi = simd::fma(wd, pi, simd::fma(mu, vi, gradient(grad)));
                    pi = simd::fnma(lr, vi, pi);
                },
                p.data(), g.data(), v);
        }
    }

    Options opt_;
    AlignedBuffer<float> velocity_;
    std::uint64_t steps_ = 0;
};

} // namespace pardl
