// ReLU activation: max(x, 0). The derivative is taken as 0 at x = 0, as PyTorch does.
#pragma once

#include "pardl/layers/activation.hpp"

namespace pardl {

namespace detail {
struct ReluFn {
    static float value(float x) { return x > 0.0f ? x : 0.0f; }
    static float derivative_from_output(float y) { return y > 0.0f ? 1.0f : 0.0f; }
    static std::string name() { return "ReLU"; }
    static constexpr bool is_relu = true; ///< Epilogue::relu computes exactly value()
};
} // namespace detail

using ReLU = Activation<detail::ReluFn>;

} // namespace pardl
