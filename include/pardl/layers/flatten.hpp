// Flatten: C x H x W samples become C*H*W features. Batches are already stored flat, row per
// sample, so this only changes the compile-time shape; the copy keeps Sequential uniform.
#pragma once

#include <algorithm>
#include <cstddef>

#include "pardl/layers/layer.hpp"

namespace pardl {

struct Flatten : LayerSpecBase {
    template <ShapeType In>
    static constexpr bool accepts = true;
    static std::string name() { return "Flatten"; }

    template <ShapeType In>
    struct bind : ParameterFree {
        using input_shape = In;
        using output_shape = Shape<In::size>;
        static std::string name() { return "Flatten"; }
        static constexpr bool row_wise = true; ///< a copy per row (row_wise_v)
        explicit bind(std::size_t) {}
        static constexpr bool backward_reads_input = false, backward_reads_output = false;

        static void copy(ConstMatrix from, Matrix to) {
            for (std::size_t r = 0; r < from.rows; ++r) std::copy_n(from.row(r), In::size, to.row(r));
        }
        void forward(const LayerSlots&, ConstMatrix x, Matrix y, const StepContext&) { copy(x, y); }
        void backward(const LayerSlots&, ConstMatrix, ConstMatrix, ConstMatrix dy, Matrix dx,
                      const StepContext&) {
            if (!dx.empty()) copy(dy, dx);
        }
    };
};

} // namespace pardl
