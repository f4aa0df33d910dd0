// Dropout<PermilleRate>: inverted dropout with p = PermilleRate / 1000. The keep decision of each
// element is a counter-based hash of (seed, step, global row, element), so masks do not depend on
// how the batch is partitioned over ranks and threads. Models BoundLayer.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>

#include "pardl/core/rng.hpp"
#include "pardl/layers/layer.hpp"

namespace pardl {

/// The rate is an integer in per mille (Dropout<500> drops half) rather than a float template
/// argument: float non-type template parameters need Clang 18, and integers name types exactly.
template <std::size_t PermilleRate>
struct Dropout : LayerSpecBase {
    static_assert(PermilleRate < 1000, "pardl: Dropout<PermilleRate> needs a rate below 1000 (p < 1)");

    static constexpr float rate = static_cast<float>(PermilleRate) / 1000.0f;
    static constexpr float scale = 1.0f / (1.0f - rate);

    template <ShapeType In>
    static constexpr bool accepts = true;

    static std::string name() { return "Dropout<" + std::to_string(PermilleRate) + ">"; }

    /// Whether element j of global row `row` survives in this step; the same in forward and backward.
    static bool keep(const StepContext& ctx, std::size_t row, std::size_t j) noexcept {
        return to_unit_float(hash_keys(ctx.seed, ctx.step, row, j)) >= rate;
    }

    template <ShapeType In>
    struct bind : ParameterFree {
        using input_shape = In;
        using output_shape = In;
        static std::string name() { return Dropout::name(); }

        explicit bind(std::size_t) {}
        /// The backward is the forward's linear map on dy: it reads neither x nor y.
        static constexpr bool backward_reads_input = false, backward_reads_output = false;

        void forward(const LayerSlots&, ConstMatrix x, Matrix y, const StepContext& ctx) { apply(x, y, ctx); }

        void backward(const LayerSlots&, ConstMatrix, ConstMatrix, ConstMatrix dy, Matrix dx,
                      const StepContext& ctx) {
            // The mask is recomputed from its keys: cheaper than storing it, and exactly the same.
            if (!dx.empty()) apply(dy, dx, ctx);
        }

    private:
        // Forward and backward are the same linear map: keep-and-scale, or the identity.
        static void apply(ConstMatrix from, Matrix to, const StepContext& ctx) {
            const bool active = ctx.training && PermilleRate > 0;
            for (std::size_t r = 0; r < from.rows; ++r) {
                const float* src = from.row(r);
                float* dst = to.row(r);
                if (!active) {
                    std::copy_n(src, In::size, dst);
                    continue;
                }
                const std::size_t row = ctx.first_row + r;
                for (std::size_t j = 0; j < In::size; ++j) dst[j] = keep(ctx, row, j) ? src[j] * scale : 0.0f;
            }
        }
    };
};

} // namespace pardl
