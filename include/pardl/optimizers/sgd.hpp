// SGD with optional momentum, Nesterov momentum and L2 weight decay, with PyTorch's update rule
// (buffer = momentum * buffer + g; no dampening), so results can be compared with torch.optim.SGD.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "pardl/core/errors.hpp"
#include "pardl/optimizers/optimizer.hpp"
#include "pardl/tensor/buffer.hpp"

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
        PARDL_REQUIRE(o.lr > 0.0f, ConfigError, "SGD: learning rate must be > 0 (got ", o.lr, ")");
        PARDL_REQUIRE(o.momentum >= 0.0f && o.momentum < 1.0f, ConfigError,
                      "SGD: momentum must be in [0, 1) (got ", o.momentum, ")");
        PARDL_REQUIRE(!o.nesterov || o.momentum > 0.0f, ConfigError, "SGD: Nesterov needs momentum > 0");
        PARDL_REQUIRE(o.weight_decay >= 0.0f, ConfigError, "SGD: weight decay must be >= 0");
    }

    void reset(std::size_t n) {
        if (opt_.momentum > 0.0f) velocity_.resize(n);
    }
    void begin_step() {}

    void update(std::span<float> p, std::span<const float> g, std::size_t offset) {
        const float lr = opt_.lr, mu = opt_.momentum, wd = opt_.weight_decay;
        float* v = velocity_.empty() ? nullptr : velocity_.data() + offset;
        const std::size_t n = p.size();
        if (!v) {
            for (std::size_t i = 0; i < n; ++i) p[i] -= lr * (g[i] + wd * p[i]);
            return;
        }
        if (opt_.nesterov) {
            for (std::size_t i = 0; i < n; ++i) {
                const float d = g[i] + wd * p[i];
                v[i] = mu * v[i] + d;
                p[i] -= lr * (d + mu * v[i]);
            }
        } else {
            for (std::size_t i = 0; i < n; ++i) {
                v[i] = mu * v[i] + g[i] + wd * p[i];
                p[i] -= lr * v[i];
            }
        }
    }

    float learning_rate() const { return opt_.lr; }
    void set_learning_rate(float lr) { opt_.lr = lr; }
    const Options& options() const { return opt_; }
    std::string name() const { return opt_.nesterov ? "sgd-nesterov" : "sgd"; }

private:
    Options opt_;
    AlignedBuffer<float> velocity_;
};

} // namespace pardl
