// Dense<Out>: fully connected layer y = x W + b on flat inputs. W is stored in x (input-major)
// order, [in][out], so forward, weight gradient and input gradient are the GEMM forms A·B, Aᵀ·B
// and A·Bᵀ with no transposed copies.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>

#include "pardl/execution/partition.hpp"
#include "pardl/layers/layer.hpp"
#include "pardl/tensor/gemm.hpp"
#include "pardl/tensor/init.hpp"
#include "pardl/tensor/vector_loop.hpp"

namespace pardl {

template <std::size_t Out, Initializer Init = HeNormal>
struct Dense : LayerSpecBase {
    static_assert(Out > 0, "pardl: Dense<Out> needs Out > 0");

    /// Dense takes flat inputs only: put Flatten after convolution or pooling layers. A Dense<0>
    /// accepts nothing, so that Sequential binds no such layer and the assertion above is the only
    /// error.
    template <ShapeType In>
    static constexpr bool accepts = Out > 0 && In::rank == 1;
    /// The compile error of an input this layer rejects: Sequential instantiates it then, so that
    /// the compiler prints this sentence (a static_assert takes a literal only).
    template <class In>
    struct reject_input {
        static_assert(accepts<In> || Out == 0, "Dense needs a flat (rank-1) input: add Flatten before it");
    };

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

        void forward(const LayerSlots& s, ConstMatrix x, Matrix y, const StepContext& ctx) {
            forward_inputs(s, x, y, {0, in}, ctx);
            add_bias(s, y, {0, Out});
        }

        void backward(const LayerSlots& s, ConstMatrix x, ConstMatrix /*y*/, ConstMatrix dy, Matrix dx,
                      const StepContext& ctx) {
            backward_inputs(s, x, dy, dx, {0, in}, ctx);
            bias_gradient(s, dy, {0, Out}, ctx);
        }

        // ---- the passes by parts: what a tensor-parallel team splits (splits_inputs) -------------
        // A member owns a range of inputs, i.e. a block of whole rows of W ([in][out] order), and
        // a range of outputs' biases; the whole passes above are these calls on everything.
        static constexpr bool splits_inputs = true;

        /// part = x[:, inputs] W[inputs, :]: these inputs' contribution to every output (no bias).
        void forward_inputs(const LayerSlots& s, ConstMatrix x, Matrix part, Range inputs,
                            const StepContext&) {
            gemm(Op::N, x.columns(inputs.begin, inputs.size()), Op::N,
                 ConstMatrix{s.params.data() + inputs.begin * Out, inputs.size(), Out}, part, 0.0f);
        }

        /// y[:, outputs] += b[outputs].
        void add_bias(const LayerSlots& s, Matrix y, Range outputs) {
            const float* b = s.params.data() + weight_count + outputs.begin;
            for (std::size_t r = 0; r < y.rows; ++r) {
                float* yr = y.row(r) + outputs.begin;
                simd::for_each_vector(
                    outputs.size(), [](simd::FloatVector& yj, const simd::FloatVector& bj) { yj += bj; }, yr,
                    b);
            }
        }

        /// The gradient of W[inputs, :] and, unless dx is empty, dx[:, inputs] (dy: all outputs).
        void backward_inputs(const LayerSlots& s, ConstMatrix x, ConstMatrix dy, Matrix dx, Range inputs,
                             const StepContext& ctx) {
            if (inputs.empty()) return;
            const ConstMatrix w{s.params.data() + inputs.begin * Out, inputs.size(), Out};
            // Overwriting is the same arithmetic as adding to zeros: beta = 0 skips reading dW.
            gemm(Op::T, x.columns(inputs.begin, inputs.size()), Op::N, dy,
                 Matrix{s.grads.data() + inputs.begin * Out, inputs.size(), Out},
                 ctx.overwrite_grads ? 0.0f : 1.0f);
            if (!dx.empty()) gemm(Op::N, dy, Op::T, w, dx.columns(inputs.begin, inputs.size()), 0.0f);
        }

        /// The gradient of b[outputs].
        void bias_gradient(const LayerSlots& s, ConstMatrix dy, Range outputs, const StepContext& ctx) {
            float* db = s.grads.data() + weight_count + outputs.begin;
            if (ctx.overwrite_grads) std::fill_n(db, outputs.size(), 0.0f);
            for (std::size_t r = 0; r < dy.rows; ++r) {
                const float* g = dy.row(r) + outputs.begin;
                simd::for_each_vector(
                    outputs.size(), [](simd::FloatVector& dbj, const simd::FloatVector& gj) { dbj += gj; },
                    db, g);
            }
        }

        /// Calls fn(first, count) for the parameters (offsets in this layer's block) of `inputs`' rows
        /// of W and of `outputs`' biases: what the member computing their gradients updates.
        template <class Fn>
        static void for_each_part_range(Range inputs, Range outputs, Fn&& fn) {
            if (!inputs.empty()) fn(inputs.begin * Out, inputs.size() * Out);
            if (!outputs.empty()) fn(weight_count + outputs.begin, outputs.size());
        }
    };
};

} // namespace pardl
