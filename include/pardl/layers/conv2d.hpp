// Conv2D<OutC, K, S, P>: 2-D convolution (cross-correlation, as PyTorch) with square kernels, as
// im2col + GEMM per sample. Weights are OutC x (C*K*K), so one sample's output OutC x (OH*OW) is
// W · columns and already has the NCHW layout of the next layer's input. The backward works on the
// sample channels-last (im2row; see bind::channels_last). Models BoundLayer.
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
    /// With a size of 0 the layer accepts no input, so that Sequential binds it to none (whose
    /// geometry would divide by 0) and the assertion above is the only error.
    static constexpr bool sizes_valid = OutChannels > 0 && Kernel > 0 && Stride > 0;

    template <ShapeType In>
    static constexpr bool accepts = [] {
        if constexpr (In::rank == 3)
            return sizes_valid && In::dims[1] + 2 * Padding >= Kernel && In::dims[2] + 2 * Padding >= Kernel;
        else
            return false;
    }();
    /// The compile error of an input this layer rejects: Sequential instantiates it then, so that
    /// the compiler prints this sentence (a static_assert takes a literal only).
    template <class In>
    struct reject_input {
        static_assert(
            accepts<In> || !sizes_valid,
            "Conv2D needs a C x H x W (rank-3) input whose padded height and width are at least Kernel");
    };

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
        /// Otherwise (unless 1x1) the backward works channels-last: dW = dy · rows reads im2row's
        /// rows in place, where dy · columnsᵀ would transpose every sample's columns into the GEMM's
        /// packing (conv2 of W-CNN: 288 x 196 floats a sample), and the input gradient goes back
        /// through row2im, whose adds run along C channels rather than along a short image row.
        /// The patch is then in (kh, kw, c) order: W is reordered into it and the gradient out of it
        /// once per batch. Each gradient element is the same sum in the same order as through the
        /// columns, so both give the same bits.
        static constexpr bool channels_last = !direct && !transposed_dw;
        /// The columns' row stride: whole cache lines (gemm_vector_row_stride), as the GEMMs read
        /// them in place a vector at a time. A 1x1 layer's "columns" are the sample itself.
        static constexpr std::size_t cols_stride = direct ? pixels : gemm_vector_row_stride(pixels);

        /// One sample's columns (or rows, pixels x patch, which fit in the columns' space), reused
        /// for every sample: forward and backward never allocate.
        explicit bind(std::size_t /*max_rows*/)
            : cols_(direct ? 0 : patch * cols_stride),
              dw_work_(transposed_dw || channels_last ? weight_count : 0),
              w_channels_last_(channels_last ? weight_count : 0),
              sample_(channels_last && geometry.channels > 1 ? In::size : 0) {}

        static void initialize(std::span<float> params, std::span<float>, Rng& rng) {
            Init::fill(params.first(weight_count), patch, OutChannels * Kernel * Kernel, rng);
            std::fill(params.begin() + weight_count, params.end(), 0.0f);
        }

        /// Sequential lets a ReLU right after this layer ride in its forward and backward (FuseRelu).
        static constexpr bool fuses_relu = true;
        /// Row-wise (row_wise_v): every sample is its own product already. A batch's weights are
        /// reordered by its first call; its weight gradient is summed sample after sample across
        /// the calls and written out by the last.
        static constexpr bool row_wise = true;
        /// The backward reads x (its columns) but not y, except for a fused ReLU's mask.
        static constexpr bool backward_reads_output = false;

        void forward(const LayerSlots& s, ConstMatrix x, Matrix y, const StepContext& ctx) {
            run_forward(s, x, y, false, ctx);
        }
        /// y = ReLU(conv(x)): the ReLU is applied in the GEMM's registers, not in a pass of its own.
        void forward(const LayerSlots& s, ConstMatrix x, Matrix y, const StepContext& ctx, FuseRelu) {
            run_forward(s, x, y, true, ctx);
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
        void run_forward(const LayerSlots& s, ConstMatrix x, Matrix y, bool relu, const StepContext& ctx) {
            const float* w = s.params.data();
            // W enters every sample's product; stored transposed, the GEMM reads it in place
            // (op(A) = (W^T)^T) instead of repacking it per sample, and computes the ragged
            // right edge of the pixels down the channels (see gemm_kernels.ipp, edge_kernel).
            if (ctx.first_part()) transpose(OutChannels, patch, w, patch, wt_.data(), wt_stride);
            // The bias (one per output channel, i.e. per row of W · columns) is added in the
            // GEMM's registers: no pass over the output before or after the product.
            const Epilogue epilogue{.row_bias = w + weight_count, .relu = relu};
            for (std::size_t r = 0; r < x.rows; ++r)
                gemm(Op::T, Op::N, OutChannels, pixels, patch, wt_.data(), wt_stride, columns(x.row(r)),
                     cols_stride, 0.0f, y.row(r), pixels, epilogue);
        }

        /// Backward; with a non-empty y, dy is first masked by the fused ReLU's derivative.
        void run_backward(const LayerSlots& s, ConstMatrix x, ConstMatrix relu_y, ConstMatrix dy, Matrix dx,
                          const StepContext& ctx) {
            const float* w = s.params.data();
            float* dw = s.grads.data();
            float* db = dw + weight_count;
            // The batch's first sample (in its first call) starts the sums.
            const bool starts = ctx.first_part();
            if (ctx.overwrite_grads && starts) {
                // The first sample's dW GEMM overwrites (beta 0); the bias sums start from zero.
                if (x.rows == 0) {
                    std::fill(s.grads.begin(), s.grads.end(), 0.0f);
                    return;
                }
                std::fill_n(db, OutChannels, 0.0f);
            }
            if constexpr (channels_last)
                if (!dx.empty() && starts)
                    for_each_weight([&](std::size_t i, std::size_t work) { w_channels_last_[work] = w[i]; });
            // Sized on first use: a convolution whose ReLU the pooling after it runs never masks
            // (Sequential::relu_by_next).
            if (!relu_y.empty() && masked_.size() < output_shape::size) masked_.resize(output_shape::size);
            for (std::size_t r = 0; r < x.rows; ++r) {
                const float* g = dy.row(r);
                if (!relu_y.empty()) {
                    ReLU::multiply_by_derivative(output_shape::size, g, relu_y.row(r), masked_.data());
                    g = masked_.data();
                }
                for (std::size_t o = 0; o < OutChannels; ++o)
                    db[o] += detail::sum_floats(g + o * pixels, pixels);
                float* dx_r = dx.empty() ? nullptr : dx.row(r);
                const bool first_sample = r == 0 && starts;
                if constexpr (channels_last) {
                    sample_backward_channels_last(x.row(r), g, dx_r, first_sample ? 0.0f : 1.0f);
                    continue;
                }
                const float* cols = columns(x.row(r));
                if constexpr (transposed_dw)
                    gemm(Op::N, Op::T, patch, OutChannels, pixels, cols, cols_stride, g, pixels,
                         first_sample ? 0.0f : 1.0f, dw_work_.data(), OutChannels);
                else
                    gemm(Op::N, Op::T, OutChannels, patch, pixels, g, pixels, cols, cols_stride,
                         first_sample && ctx.overwrite_grads ? 0.0f : 1.0f, dw, patch);
                if (dx_r == nullptr) continue;
                if constexpr (direct) {
                    gemm(Op::T, Op::N, patch, pixels, OutChannels, w, patch, g, pixels, 0.0f, dx_r, pixels);
                } else {
                    // The columns were consumed by dW above, so their buffer takes the column gradient.
                    gemm(Op::T, Op::N, patch, pixels, OutChannels, w, patch, g, pixels, 0.0f, cols_.data(),
                         cols_stride);
                    std::fill_n(dx_r, In::size, 0.0f);
                    col2im(geometry, cols_.data(), cols_stride, dx_r);
                }
            }
            // A gradient accumulated in another layout goes into dw once per batch, by its last call
            // (unless no call had a sample: an empty batch never started dw_work_).
            if constexpr (transposed_dw || channels_last) {
                const bool accumulated = x.rows > 0 || !starts;
                if (ctx.last_part(x.rows) && accumulated)
                    for_each_weight([&](std::size_t i, std::size_t work) {
                        dw[i] = ctx.overwrite_grads ? dw_work_[work] : dw[i] + dw_work_[work];
                    });
            }
        }

        /// Calls fn(i, work) for every weight: i its index in W (o, c, kh, kw), work its index in
        /// dw_work_ and w_channels_last_ ((c, kh, kw, o) if transposed_dw, else (o, kh, kw, c)).
        template <class Fn>
        static void for_each_weight(Fn&& fn) {
            constexpr std::size_t C = geometry.channels, K = Kernel;
            for (std::size_t o = 0; o < OutChannels; ++o)
                for (std::size_t c = 0; c < C; ++c)
                    for (std::size_t kh = 0; kh < K; ++kh)
                        for (std::size_t kw = 0; kw < K; ++kw) {
                            const std::size_t q = (c * K + kh) * K + kw; // im2col's patch order
                            fn(o * patch + q,
                               transposed_dw ? q * OutChannels + o : o * patch + (kh * K + kw) * C + c);
                        }
        }

        /// One sample's backward channels-last (see channels_last); dW accumulates in dw_work_.
        void sample_backward_channels_last(const float* x, const float* g, float* dx, float beta) {
            // A one-channel image is its own channels-last form.
            constexpr std::size_t C = geometry.channels, image = geometry.height * geometry.width;
            constexpr bool reorder = C > 1;
            if constexpr (reorder) transpose(C, image, x, image, sample_.data(), C);
            im2row(geometry, reorder ? sample_.data() : x, cols_.data());
            gemm(Op::N, Op::N, OutChannels, patch, pixels, g, pixels, cols_.data(), patch, beta,
                 dw_work_.data(), patch);
            if (dx == nullptr) return;
            // The rows were consumed by dW, so their buffer takes the row gradient dyᵀ · W.
            gemm(Op::T, Op::N, pixels, patch, OutChannels, g, pixels, w_channels_last_.data(), patch, 0.0f,
                 cols_.data(), patch);
            row2im(geometry, cols_.data(), reorder ? sample_.data() : dx);
            if constexpr (reorder) transpose(image, C, sample_.data(), C, dx, image);
        }

        const float* columns(const float* sample) {
            if constexpr (direct) {
                return sample;
            } else {
                im2col(geometry, sample, cols_.data(), cols_stride);
                return cols_.data();
            }
        }

        AlignedBuffer<float> cols_;
        /// wt_'s row stride: the GEMM reads wt_ in place, and rows of OutChannels floats may lie
        /// too evenly apart for the L1 (64 channels: 256 bytes; see gemm_row_stride).
        static constexpr std::size_t wt_stride = gemm_row_stride(OutChannels);
        /// The weights transposed, (C*K*K) x OutC with row stride wt_stride, for forward.
        AlignedBuffer<float> wt_{patch * wt_stride};
        AlignedBuffer<float>
            dw_work_; ///< this batch's weight gradient as the GEMM builds it (for_each_weight)
        AlignedBuffer<float> w_channels_last_; ///< the weights with the patch in (kh, kw, c) order
        AlignedBuffer<float> sample_;          ///< one sample's input, then its input gradient, channels-last
        AlignedBuffer<float> masked_; ///< one sample's dy masked by a fused ReLU (sized on first use)
    };
};

} // namespace pardl
