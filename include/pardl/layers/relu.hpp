// ReLU activation: max(x, 0), +0 for every x <= 0 (-0 included) and NaN passed through, as PyTorch
// does: a diverged value then reaches the loss, whose check stops training, instead of being
// turned into a harmless-looking 0. The derivative is taken as 0 at x = 0 (and at NaN), as PyTorch
// does.
#pragma once

#include "pardl/layers/activation.hpp"
#include "pardl/tensor/vector_loop.hpp"

namespace pardl {

namespace detail {
struct ReluFn {
    static float value(float x) { return x <= 0.0f ? 0.0f : x; }
    static float derivative_from_output(float y) { return y > 0.0f ? 1.0f : 0.0f; }
    /// The same, a vector at a time (Activation's loops; same bits).
    static simd::FloatVector vector_value(simd::FloatVector x) {
        const simd::FloatVector zero = simd::broadcast(0.0f);
        return simd::select(x <= zero, zero, x);
    }
    static simd::FloatVector vector_derivative_from_output(simd::FloatVector y) {
        const simd::FloatVector zero = simd::broadcast(0.0f);
        return simd::select(y > zero, simd::broadcast(1.0f), zero);
    }
    static std::string name() { return "ReLU"; }
    static constexpr bool is_relu = true; ///< Epilogue::relu computes exactly value()
};
} // namespace detail

using ReLU = Activation<detail::ReluFn>;

} // namespace pardl
