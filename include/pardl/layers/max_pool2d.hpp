// MaxPool2D<K, S>: max over K x K windows (stride S, no padding) per channel. Forward records the
// winning input of each output in per-worker scratch so backward routes gradients without search.
// Models BoundLayer.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "pardl/layers/layer.hpp"
#include "pardl/tensor/buffer.hpp"

namespace pardl {

template <std::size_t Kernel, std::size_t Stride = Kernel>
struct MaxPool2D : LayerSpecBase {
    static_assert(Kernel > 0 && Stride > 0, "pardl: MaxPool2D needs Kernel > 0 and Stride > 0");

    template <ShapeType In>
    static constexpr bool accepts = [] {
        if constexpr (In::rank == 3)
            return In::dims[1] >= Kernel && In::dims[2] >= Kernel;
        else
            return false;
    }();
    static constexpr const char* requirement =
        "MaxPool2D needs a C x H x W (rank-3) input at least Kernel high and wide";

    static std::string name() {
        std::string s = "MaxPool2D<" + std::to_string(Kernel);
        if (Stride != Kernel) s += ",s" + std::to_string(Stride);
        return s + ">";
    }

    template <ShapeType In>
    struct bind : ParameterFree {
        static constexpr std::size_t C = ImageDims<In>::channels, H = ImageDims<In>::height,
                                     W = ImageDims<In>::width;
        static constexpr std::size_t OH = (H - Kernel) / Stride + 1, OW = (W - Kernel) / Stride + 1;
        using input_shape = In;
        using output_shape = Shape<C, OH, OW>;
        static constexpr std::size_t out_size = output_shape::size;
        static_assert(In::size <= UINT32_MAX, "pardl: MaxPool2D stores argmax indices as 32-bit");

        static std::string name() { return MaxPool2D::name(); }

        explicit bind(std::size_t max_rows) : argmax_(max_rows * out_size) {}

        void forward(const LayerSlots&, ConstMatrix x, Matrix y, const StepContext&) {
            for (std::size_t r = 0; r < x.rows; ++r) {
                const float* xr = x.row(r);
                float* yr = y.row(r);
                std::uint32_t* ar = argmax_.data() + r * out_size;
                for (std::size_t c = 0; c < C; ++c)
                    for (std::size_t oh = 0; oh < OH; ++oh)
                        for (std::size_t ow = 0; ow < OW; ++ow) {
                            // Selects rather than branches (on real data the comparison is a coin
                            // flip). A strict > in row-major window order keeps the first maximum
                            // on ties, as PyTorch does.
                            const std::size_t top = (c * H + oh * Stride) * W + ow * Stride;
                            float m = xr[top];
                            std::size_t best = top;
                            for (std::size_t kh = 0; kh < Kernel; ++kh)
                                for (std::size_t kw = 0; kw < Kernel; ++kw) {
                                    const std::size_t at = top + kh * W + kw;
                                    const float v = xr[at];
                                    // GCC turns a ?: pair back into a branch; masks it keeps.
                                    const std::size_t take = std::size_t{0} - static_cast<std::size_t>(v > m);
                                    best ^= (best ^ at) & take;
                                    m = std::max(m, v);
                                }
                            const std::size_t o = (c * OH + oh) * OW + ow;
                            yr[o] = m;
                            ar[o] = static_cast<std::uint32_t>(best);
                        }
            }
        }

        void backward(const LayerSlots&, ConstMatrix x, ConstMatrix, ConstMatrix dy, Matrix dx,
                      const StepContext&) {
            if (dx.empty()) return;
            for (std::size_t r = 0; r < x.rows; ++r) {
                float* d = dx.row(r);
                const float* g = dy.row(r);
                const std::uint32_t* ar = argmax_.data() + r * out_size;
                std::fill_n(d, In::size, 0.0f);
                // Overlapping windows (Stride < Kernel) may share a winner, hence +=.
                for (std::size_t o = 0; o < out_size; ++o) d[ar[o]] += g[o];
            }
        }

    private:
        AlignedBuffer<std::uint32_t> argmax_;
    };
};

} // namespace pardl
