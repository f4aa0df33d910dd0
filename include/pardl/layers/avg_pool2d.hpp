// AvgPool2D<K, S>: mean over K x K windows (stride S, no padding) per channel; backward spreads
// each output gradient evenly over its window. Models BoundLayer.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>

#include "pardl/layers/layer.hpp"
#include "pardl/layers/pool_window.hpp"

namespace pardl {

template <std::size_t Kernel, std::size_t Stride = Kernel>
struct AvgPool2D : LayerSpecBase, detail::PoolWindow<Kernel, Stride> {
    /// The compile error of an input this layer rejects: Sequential instantiates it then, so that
    /// the compiler prints this sentence (a static_assert takes a literal only).
    template <class In>
    struct reject_input {
        static_assert(detail::PoolWindow<Kernel, Stride>::template accepts<In> ||
                          !detail::PoolWindow<Kernel, Stride>::sizes_valid,
                      "AvgPool2D needs a C x H x W (rank-3) input at least Kernel high and wide");
    };

    static std::string name() { return detail::PoolWindow<Kernel, Stride>::label("AvgPool2D"); }

    template <ShapeType In>
    struct bind : ParameterFree, detail::PoolWindow<Kernel, Stride>::template Geometry<In> {
        using Geometry = typename detail::PoolWindow<Kernel, Stride>::template Geometry<In>;
        using Geometry::C, Geometry::H, Geometry::W, Geometry::OH, Geometry::OW;
        using typename Geometry::input_shape, typename Geometry::output_shape;
        static constexpr float inv_area = 1.0f / static_cast<float>(Kernel * Kernel);

        static std::string name() { return AvgPool2D::name(); }
        static constexpr bool row_wise = true; ///< no scratch: each row on its own (row_wise_v)

        explicit bind(std::size_t) {}
        /// Each input's share of the gradient is fixed (1 / window area): neither x nor y is read.
        static constexpr bool backward_reads_input = false, backward_reads_output = false;

        void forward(const LayerSlots&, ConstMatrix x, Matrix y, const StepContext&) {
            for (std::size_t r = 0; r < x.rows; ++r) {
                const float* xr = x.row(r);
                float* yr = y.row(r);
                for (std::size_t c = 0; c < C; ++c)
                    for (std::size_t oh = 0; oh < OH; ++oh)
                        for (std::size_t ow = 0; ow < OW; ++ow) {
                            float acc = 0.0f;
                            for (std::size_t kh = 0; kh < Kernel; ++kh) {
                                const float* row = xr + (c * H + oh * Stride + kh) * W + ow * Stride;
                                for (std::size_t kw = 0; kw < Kernel; ++kw) acc += row[kw];
                            }
                            yr[(c * OH + oh) * OW + ow] = acc * inv_area;
                        }
            }
        }

        void backward(const LayerSlots&, ConstMatrix, ConstMatrix, ConstMatrix dy, Matrix dx,
                      const StepContext&) {
            if (dx.empty()) return;
            for (std::size_t r = 0; r < dy.rows; ++r) {
                float* d = dx.row(r);
                const float* g = dy.row(r);
                std::fill_n(d, In::size, 0.0f);
                for (std::size_t c = 0; c < C; ++c)
                    for (std::size_t oh = 0; oh < OH; ++oh)
                        for (std::size_t ow = 0; ow < OW; ++ow) {
                            const float share = g[(c * OH + oh) * OW + ow] * inv_area;
                            for (std::size_t kh = 0; kh < Kernel; ++kh) {
                                float* row = d + (c * H + oh * Stride + kh) * W + ow * Stride;
                                for (std::size_t kw = 0; kw < Kernel; ++kw) row[kw] += share;
                            }
                        }
            }
        }
    };
};

} // namespace pardl
