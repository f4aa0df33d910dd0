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
    static constexpr const char* requirement = "";

    static std::string name() { return Fn::name(); }

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

        /// Whether Fn has vector forms of value and derivative_from_output (ReLU), which give the
        /// same bits in vectors at any -O level (simd::for_each_vector); the others (exp, tanh)
        /// stay scalar calls of the C library.
        static constexpr bool vectorised = requires(simd::FloatVector v) {
            Fn::vector_value(v);
            Fn::vector_derivative_from_output(v);
        };

        void forward(const LayerSlots&, ConstMatrix x, Matrix y, const StepContext&) {
            for (std::size_t r = 0; r < x.rows; ++r) {
                const float* xr = x.row(r);
                float* yr = y.row(r);
                if constexpr (vectorised)
                    simd::for_each_vector(
                        x.cols,
                        [](simd::FloatVector& out, const simd::FloatVector& in) {
                            out = Fn::vector_value(in);
                        },
                        yr, xr);
                else
                    for (std::size_t j = 0; j < x.cols; ++j) yr[j] = Fn::value(xr[j]);
            }
        }

        void backward(const LayerSlots&, ConstMatrix, ConstMatrix y, ConstMatrix dy, Matrix dx,
                      const StepContext&) {
            if (dx.empty()) return;
            for (std::size_t r = 0; r < y.rows; ++r) {
                const float* yr = y.row(r);
                const float* g = dy.row(r);
                float* d = dx.row(r);
                if constexpr (vectorised)
                    simd::for_each_vector(
                        y.cols,
                        [](simd::FloatVector& out, const simd::FloatVector& gj, const simd::FloatVector& yj) {
                            out = gj * Fn::vector_derivative_from_output(yj);
                        },
                        d, g, yr);
                else
                    for (std::size_t j = 0; j < y.cols; ++j) d[j] = g[j] * Fn::derivative_from_output(yr[j]);
            }
        }
    };
};

} // namespace pardl
