// Activation<Fn>: the shared shape of elementwise activation layers. Fn gives the value and the
// derivative expressed through the output (y), which is what backward has at hand.
#pragma once

#include <cstddef>
#include <string>

#include "pardl/layers/layer.hpp"
#include "pardl/tensor/vector_loop.hpp"

namespace pardl {

template <class Fn>
struct Activation : LayerSpecBase {
    template <ShapeType In>
    static constexpr bool accepts = true;

    static std::string name() { return Fn::name(); }

    /// Whether Fn has vector forms of value and derivative_from_output (ReLU), which give the
    /// same bits in vectors at any -O level (simd::for_each_vector); the others (exp, tanh)
    /// stay scalar calls of the C library.
    static constexpr bool vectorised = requires(simd::FloatVector v) {
        Fn::vector_value(v);
        Fn::vector_derivative_from_output(v);
    };

    /// y = f(x) over n elements (may be in place).
    static void apply(std::size_t n, const float* x, float* y) {
        if constexpr (vectorised)
            simd::for_each_vector(
                n, [](simd::FloatVector& out, const simd::FloatVector& in) { out = Fn::vector_value(in); }, y,
                x);
        else
            for (std::size_t j = 0; j < n; ++j) y[j] = Fn::value(x[j]);
    }

    /// d = g f'(y) over n elements (may be in place): a row of the backward, also for a layer that
    /// runs this activation inside its own backward (Conv2D's fused ReLU).
    static void multiply_by_derivative(std::size_t n, const float* g, const float* y, float* d) {
        if constexpr (vectorised)
            simd::for_each_vector(
                n,
                [](simd::FloatVector& out, const simd::FloatVector& gj, const simd::FloatVector& yj) {
                    out = gj * Fn::vector_derivative_from_output(yj);
                },
                d, g, y);
        else
            for (std::size_t j = 0; j < n; ++j) d[j] = g[j] * Fn::derivative_from_output(y[j]);
    }

    template <ShapeType In>
    struct bind : ParameterFree {
        using input_shape = In;
        using output_shape = In;
        static std::string name() { return Fn::name(); }
        /// A ReLU can be taken over by the layer before it (FuseRelu).
        static constexpr bool is_relu = requires { requires Fn::is_relu; };
        static constexpr bool row_wise = true; ///< elementwise: each row on its own (row_wise_v)
        /// Each element on its own: the passes may be given any block of columns (the views'
        /// `cols`), which a tensor-parallel team uses to keep them on the thread that made them.
        static constexpr bool elementwise = true;

        explicit bind(std::size_t) {}
        /// The derivative is taken from the output (derivative_from_output): x is not read.
        static constexpr bool backward_reads_input = false;

        void forward(const LayerSlots&, ConstMatrix x, Matrix y, const StepContext&) {
            for (std::size_t r = 0; r < x.rows; ++r) apply(x.cols, x.row(r), y.row(r));
        }

        void backward(const LayerSlots&, ConstMatrix, ConstMatrix y, ConstMatrix dy, Matrix dx,
                      const StepContext&) {
            if (dx.empty()) return;
            for (std::size_t r = 0; r < y.rows; ++r)
                multiply_by_derivative(y.cols, dy.row(r), y.row(r), dx.row(r));
        }
    };
};

} // namespace pardl
