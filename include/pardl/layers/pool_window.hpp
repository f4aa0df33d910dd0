// PoolWindow<Kernel, Stride>: what MaxPool2D and AvgPool2D share: which inputs a K x K window
// with stride S (no padding) accepts, the layer label, and the output geometry.
#pragma once

#include <cstddef>
#include <string>

#include "pardl/tensor/shape.hpp"

namespace pardl::detail {

template <std::size_t Kernel, std::size_t Stride>
struct PoolWindow {
    static_assert(Kernel > 0 && Stride > 0, "pardl: pooling needs Kernel > 0 and Stride > 0");
    /// With a size of 0 the window accepts no input, so that Sequential binds it to none (whose
    /// geometry would divide by 0) and the assertion above is the only error.
    static constexpr bool sizes_valid = Kernel > 0 && Stride > 0;

    /// A C x H x W input at least Kernel high and wide.
    template <ShapeType In>
    static constexpr bool accepts = [] {
        if constexpr (In::rank == 3)
            return sizes_valid && In::dims[1] >= Kernel && In::dims[2] >= Kernel;
        else
            return false;
    }();

    /// "MaxPool2D<2>", or "MaxPool2D<3,s2>" when the stride is not the kernel size.
    static std::string label(const char* kind) {
        std::string s = std::string(kind) + "<" + std::to_string(Kernel);
        if (Stride != Kernel) s += ",s" + std::to_string(Stride);
        return s + ">";
    }

    template <ShapeType In>
    struct Geometry {
        static constexpr std::size_t C = ImageDims<In>::channels, H = ImageDims<In>::height,
                                     W = ImageDims<In>::width;
        static constexpr std::size_t OH = (H - Kernel) / Stride + 1, OW = (W - Kernel) / Stride + 1;
        using input_shape = In;
        using output_shape = Shape<C, OH, OW>;
    };
};

} // namespace pardl::detail
