// Sigmoid activation 1 / (1 + e^-x), written to stay finite for large |x|.
#pragma once

#include <cmath>

#include "pardl/layers/activation.hpp"

namespace pardl {

namespace detail {
struct SigmoidFn {
    static float value(float x) {
        // Split by sign so exp never overflows.
        if (x >= 0.0f) return 1.0f / (1.0f + std::exp(-x));
        const float e = std::exp(x);
        return e / (1.0f + e);
    }
    static float derivative_from_output(float y) { return y * (1.0f - y); }
    static std::string name() { return "Sigmoid"; }
};
} // namespace detail

using Sigmoid = Activation<detail::SigmoidFn>;

} // namespace pardl
