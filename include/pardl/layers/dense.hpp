// Dense<Out>: fully connected layer y = x W + b on flat inputs. W is stored in x (input-major)
// order, [in][out], so forward, weight gradient and input gradient are the GEMM forms A·B, Aᵀ·B
// and A·Bᵀ with no transposed copies.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>

#include "pardl/layers/layer.hpp"
#include "pardl/tensor/gemm.hpp"
#include "pardl/tensor/init.hpp"

namespace pardl {

template <std::size_t Out, Initializer Init = HeNormal>
struct Dense : LayerSpecBase {
    static_assert(Out > 0, "pardl: Dense<Out> needs Out > 0");

    /// Dense takes flat inputs only: put Flatten after convolution or pooling layers.
    template <ShapeType In>
    static constexpr bool accepts = In::rank == 1;
    static constexpr const char* requirement = "Dense needs a flat (rank-1) input: add Flatten before it";

    static std::string name() { return "Dense<" + std::to_string(Out) + ">"; }

    template <ShapeType In>
    struct bind {
        using input_shape = In;
        using output_shape = Shape<Out>;
        static constexpr std::size_t in = In::size;
        static constexpr std::size_t weight_count = in * Out;
        static constexpr std::size_t param_count = weight_count + Out;
        static constexpr std::size_t state_count = 0;
        static constexpr std::size_t macs = in * Out; ///< per sample, forward
        static constexpr bool overwrites_grads = true;
        static constexpr bool backward_reads_output = false; ///< x and dy suffice

        static std::string name() { return Dense::name(); }

        explicit bind(std::size_t /*max_rows*/) {}

        static void initialize(std::span<float> params, std::span<float>, Rng& rng) {
            Init::fill(params.first(weight_count), in, Out, rng);
            std::fill(params.begin() + weight_count, params.end(), 0.0f);
        }

        void forward(const LayerSlots& s, ConstMatrix x, Matrix y, const StepContext&) {
            const float* w = s.params.data();
            const float* b = w + weight_count;
            gemm(Op::N, x, Op::N, ConstMatrix{w, in, Out}, y, 0.0f);
            for (std::size_t r = 0; r < y.rows; ++r) {
                float* yr = y.row(r);
                for (std::size_t j = 0; j < Out; ++j) yr[j] += b[j];
            }
        }

        void backward(const LayerSlots& s, ConstMatrix x, ConstMatrix /*y*/, ConstMatrix dy, Matrix dx,
                      const StepContext& ctx) {
            float* dw = s.grads.data();
            float* db = dw + weight_count;
            // Overwriting is the same arithmetic as adding to zeros: beta = 0 skips reading dW.
            gemm(Op::T, x, Op::N, dy, Matrix{dw, in, Out}, ctx.overwrite_grads ? 0.0f : 1.0f);
            if (ctx.overwrite_grads) std::fill_n(db, Out, 0.0f);
            for (std::size_t r = 0; r < dy.rows; ++r) {
                const float* g = dy.row(r);
                for (std::size_t j = 0; j < Out; ++j) db[j] += g[j];
            }
            if (!dx.empty()) gemm(Op::N, dy, Op::T, ConstMatrix{s.params.data(), in, Out}, dx, 0.0f);
        }
    };
};

} // namespace pardl
