// Conv2D<OutC, K, S, P>: 2-D convolution (cross-correlation, as PyTorch) with square kernels, as
// im2col + GEMM per sample. Weights are OutC x (C*K*K), so one sample's output OutC x (OH*OW) is
// W · columns and already has the NCHW layout of the next layer's input. Models BoundLayer.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>

#include "pardl/layers/layer.hpp"
#include "pardl/layers/relu.hpp"
#include "pardl/tensor/buffer.hpp"
#include "pardl/tensor/gemm.hpp"
#include "pardl/tensor/im2col.hpp"
#include "pardl/tensor/init.hpp"

namespace pardl {

namespace detail {
/// Sum of n floats in 16 independent partial sums: a single running sum is a serial chain of
/// dependent adds that the compiler may not reorder (no -ffast-math), 10x slower than vectors.
inline float sum_floats(const float* v, std::size_t n) noexcept {
    constexpr std::size_t lanes = 16;
    float part[lanes] = {};
    std::size_t i = 0;
    for (; i + lanes <= n; i += lanes)
        for (std::size_t l = 0; l < lanes; ++l) part[l] += v[i + l];
    const std::size_t tail = n - i; // < lanes
    for (std::size_t l = 0; l < tail && l < lanes; ++l) part[l] += v[i + l];
    float s = 0.0f;
    for (float p : part) s += p;
    return s;
}
} // namespace detail

template <std::size_t OutChannels, std::size_t Kernel, std::size_t Stride = 1, std::size_t Padding = 0,
          Initializer Init = HeNormal>
struct Conv2D : LayerSpecBase {
    static_assert(OutChannels > 0, "pardl: Conv2D needs OutChannels > 0");
    static_assert(Kernel > 0, "pardl: Conv2D needs Kernel > 0");
    static_assert(Stride > 0, "pardl: Conv2D needs Stride > 0");

    template <ShapeType In>
    static constexpr bool accepts = [] {
        if constexpr (In::rank == 3)
            return In::dims[1] + 2 * Padding >= Kernel && In::dims[2] + 2 * Padding >= Kernel;
        else
            return false;
    }();
    static constexpr const char* requirement =
        "Conv2D needs a C x H x W (rank-3) input whose padded height and width are at least Kernel";

    static std::string name() {
        return "Conv2D<" + std::to_string(OutChannels) + "," + std::to_string(Kernel) + ",s" +
               std::to_string(Stride) + ",p" + std::to_string(Padding) + ">";
    }

    template <ShapeType In>
    struct bind {
        static constexpr ConvGeometry geometry{
            ImageDims<In>::channels, ImageDims<In>::height, ImageDims<In>::width, Kernel, Stride, Padding};
        static constexpr std::size_t patch = geometry.patch_size();  // C*K*K: GEMM depth
        static constexpr std::size_t pixels = geometry.out_pixels(); // OH*OW
        using input_shape = In;
        using output_shape = Shape<OutChannels, geometry.out_height(), geometry.out_width()>;
        static constexpr std::size_t weight_count = OutChannels * patch;
        static constexpr std::size_t param_count = weight_count + OutChannels;
        static constexpr std::size_t state_count = 0;
        static constexpr std::size_t macs = OutChannels * patch * pixels; ///< per sample, forward
        static constexpr bool overwrites_grads = true;
        /// A 1x1, stride-1, unpadded convolution's columns are the sample itself: no im2col copy.
        static constexpr bool direct = Kernel == 1 && Stride == 1 && Padding == 0;

        static std::string name() { return Conv2D::name(); }

        /// The GEMM fills its vector registers along n, so a weight gradient with fewer columns
        /// (C*K*K, e.g. 9 for a one-channel 3x3 layer) than rows (OutC) is accumulated transposed,
        /// as (C*K*K) x OutC, and transposed into the gradient once per batch.
        static constexpr bool transposed_dw = patch < OutChannels;

        /// One sample's columns, reused for every sample: forward and backward never allocate.
        explicit bind(std::size_t /*max_rows*/)
            : cols_(direct ? 0 : patch * pixels), dwt_(transposed_dw ? weight_count : 0) {}

        static void initialize(std::span<float> params, std::span<float>, Rng& rng) {
            Init::fill(params.first(weight_count), patch, OutChannels * Kernel * Kernel, rng);
            std::fill(params.begin() + weight_count, params.end(), 0.0f);
        }

        /// Sequential lets a ReLU right after this layer ride in its forward and backward (FuseRelu).
        static constexpr bool fuses_relu = true;

        void forward(const LayerSlots& s, ConstMatrix x, Matrix y, const StepContext&) {
            run_forward(s, x, y, false);
        }
        /// y = ReLU(conv(x)): the ReLU is applied in the GEMM's registers, not in a pass of its own.
        void forward(const LayerSlots& s, ConstMatrix x, Matrix y, const StepContext&, FuseRelu) {
            run_forward(s, x, y, true);
        }

        void backward(const LayerSlots& s, ConstMatrix x, ConstMatrix /*y*/, ConstMatrix dy, Matrix dx,
                      const StepContext& ctx) {
            run_backward(s, x, {}, dy, dx, ctx);
        }
        /// dy is the gradient with respect to y = ReLU(conv(x)): each sample's is masked by the
        /// ReLU's derivative into a one-sample buffer that the GEMMs below then read from cache,
        /// instead of a separate pass writing and rereading the whole batch's gradient.
        void backward(const LayerSlots& s, ConstMatrix x, ConstMatrix y, ConstMatrix dy, Matrix dx,
                      const StepContext& ctx, FuseRelu) {
            run_backward(s, x, y, dy, dx, ctx);
        }

    private:
        void run_forward(const LayerSlots& s, ConstMatrix x, Matrix y, bool relu) {
            const float* w = s.params.data();
            // W enters every sample's product; stored transposed, the GEMM reads it in place
            // (op(A) = (W^T)^T) instead of repacking it per sample, and computes the ragged
            // right edge of the pixels down the channels (see gemm_kernels.ipp, edge_kernel).
            for (std::size_t o = 0; o < OutChannels; ++o)
                for (std::size_t q = 0; q < patch; ++q) wt_[q * OutChannels + o] = w[o * patch + q];
            // The bias (one per output channel, i.e. per row of W · columns) is added in the
            // GEMM's registers: no pass over the output before or after the product.
            const Epilogue epilogue{.row_bias = w + weight_count, .relu = relu};
            for (std::size_t r = 0; r < x.rows; ++r)
                gemm(Op::T, Op::N, OutChannels, pixels, patch, wt_.data(), OutChannels, columns(x.row(r)),
                     pixels, 0.0f, y.row(r), pixels, epilogue);
        }

        /// Backward; with a non-empty y, dy is first masked by the fused ReLU's derivative.
        void run_backward(const LayerSlots& s, ConstMatrix x, ConstMatrix relu_y, ConstMatrix dy, Matrix dx,
                          const StepContext& ctx) {
            const float* w = s.params.data();
            float* dw = s.grads.data();
            float* db = dw + weight_count;
            if (ctx.overwrite_grads) {
                // The first sample's dW GEMM overwrites (beta 0); the bias sums start from zero.
                if (x.rows == 0) {
                    std::fill(s.grads.begin(), s.grads.end(), 0.0f);
                    return;
                }
                std::fill_n(db, OutChannels, 0.0f);
            }
            // Sized on first use: a convolution whose ReLU the pooling after it runs never masks
            // (Sequential::relu_by_next).
            if (!relu_y.empty() && masked_.size() < output_shape::size) masked_.resize(output_shape::size);
            for (std::size_t r = 0; r < x.rows; ++r) {
                const float* g = dy.row(r);
                if (!relu_y.empty()) {
                    const float* yr = relu_y.row(r);
                    for (std::size_t j = 0; j < output_shape::size; ++j)
                        masked_[j] = g[j] * detail::ReluFn::derivative_from_output(yr[j]);
                    g = masked_.data();
                }
                // Columns are rebuilt rather than kept from forward: memory for one sample only.
                const float* cols = columns(x.row(r));
                if constexpr (transposed_dw)
                    gemm(Op::N, Op::T, patch, OutChannels, pixels, cols, pixels, g, pixels,
                         r == 0 ? 0.0f : 1.0f, dwt_.data(), OutChannels);
                else
                    gemm(Op::N, Op::T, OutChannels, patch, pixels, g, pixels, cols, pixels,
                         r == 0 && ctx.overwrite_grads ? 0.0f : 1.0f, dw, patch);
                for (std::size_t o = 0; o < OutChannels; ++o)
                    db[o] += detail::sum_floats(g + o * pixels, pixels);
                if (dx.empty()) continue;
                if constexpr (direct) {
                    gemm(Op::T, Op::N, patch, pixels, OutChannels, w, patch, g, pixels, 0.0f, dx.row(r),
                         pixels);
                } else {
                    // The columns were consumed by dW above, so their buffer takes the column gradient.
                    gemm(Op::T, Op::N, patch, pixels, OutChannels, w, patch, g, pixels, 0.0f, cols_.data(),
                         pixels);
                    float* d = dx.row(r);
                    std::fill_n(d, In::size, 0.0f);
                    col2im(geometry, cols_.data(), d);
                }
            }
            if constexpr (transposed_dw)
                if (x.rows > 0)
                    for (std::size_t o = 0; o < OutChannels; ++o)
                        for (std::size_t q = 0; q < patch; ++q)
                            dw[o * patch + q] =
                                (ctx.overwrite_grads ? 0.0f : dw[o * patch + q]) + dwt_[q * OutChannels + o];
        }

        const float* columns(const float* sample) {
            if constexpr (direct) {
                return sample;
            } else {
                im2col(geometry, sample, cols_.data());
                return cols_.data();
            }
        }

        AlignedBuffer<float> cols_;
        AlignedBuffer<float> wt_{weight_count}; ///< the weights transposed, (C*K*K) x OutC, for forward
        AlignedBuffer<float> dwt_;    ///< this batch's weight gradient, transposed (see transposed_dw)
        AlignedBuffer<float> masked_; ///< one sample's dy masked by a fused ReLU (sized on first use)
    };
};

} // namespace pardl
