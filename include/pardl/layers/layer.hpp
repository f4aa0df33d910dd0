// The layer contract: what a layer type must provide to be composed by Sequential, as C++20
// concepts with the exact pre- and post-conditions in prose. Every layer header models it.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "pardl/core/rng.hpp"
#include "pardl/tensor/shape.hpp"
#include "pardl/tensor/view.hpp"

namespace pardl {

/// Sums values over every worker of the step (threads of all ranks). Layers that need batch-wide
/// statistics (synchronised batch norm) call it; it is a collective: every worker must call it
/// the same number of times with the same length, and on return all hold the global sums.
class WorkerReducer {
public:
    virtual void sum(std::span<double> values) = 0;

protected:
    ~WorkerReducer() = default;
};

/// What one worker knows about the step it is computing. Random layers (dropout) key their draws
/// by (seed, step, first_row + local row) so the result does not depend on the partition.
struct StepContext {
    bool training = true;
    std::uint64_t seed = 0;
    std::uint64_t step = 0;
    std::size_t first_row = 0;        ///< global index (within the global batch) of this worker's first row
    std::size_t global_rows = 0;      ///< rows in the global batch
    WorkerReducer* reducer = nullptr; ///< null when this worker is the only one
    bool updates_state = true;        ///< exactly one worker per process writes running statistics
    /// The gradient slices hold stale values: layers that declare `overwrites_grads` write their
    /// gradient instead of adding to it (Sequential clears the slices of the others first). The
    /// trainer sets it so that no pass over the gradient buffers has to clear them every step.
    bool overwrite_grads = false;
    /// Which rows of the worker's batch this call covers. Sequential runs the model's leading
    /// row-wise layers (row_wise_v) a few rows at a time, so that their large activations are
    /// reread from the L2 cache instead of memory; each pass over those layers then comes as
    /// consecutive calls in row order, the first at part_first == 0. part_rows is the batch's
    /// rows, 0 when the call has them all (the default, and always for other layers).
    std::size_t part_first = 0;
    std::size_t part_rows = 0;
    /// Whether this call starts the batch's pass (the first of its calls).
    constexpr bool first_part() const noexcept { return part_first == 0; }
    /// Whether this call, on `rows` rows, ends the batch's pass (the last of its calls).
    constexpr bool last_part(std::size_t rows) const noexcept {
        return part_rows == 0 || part_first + rows >= part_rows;
    }
};

/// The memory a bound layer works on: its own slices of the flat buffers (empty if it has none).
struct LayerSlots {
    std::span<const float> params; ///< this layer's parameters (read only during a step)
    std::span<float> grads; ///< this worker's gradient slice: backward ADDS to it (see overwrite_grads)
    std::span<float> state; ///< non-trained persistent values (running statistics)
};

/// A bound layer: a layer spec instantiated for one input shape.
///
/// requires
///  - `input_shape`, `output_shape`: Shape<...> of one sample; `param_count`, `state_count`.
///  - `L(max_rows)`: construct per-worker scratch for batches of at most max_rows rows; no
///    allocation may happen in forward/backward afterwards.
///  - `L::initialize(params, state, rng)`: fill the parameter block (and state) from rng.
///  - `forward(slots, x, y, ctx)`: x is rows x input_shape::size, y rows x output_shape::size;
///    overwrites y. May keep what backward needs in its scratch.
///  - `backward(slots, x, y, dy, dx, ctx)`: called after forward with the same x, y; dy is the
///    gradient of the objective w.r.t. y. ensures: slots.grads += d(objective)/d(params) summed
///    over rows; dx = d(objective)/dx (overwritten), unless dx.empty(), when it is skipped.
///    A layer that never reads x (or y) there may say so (backward_reads_input_v,
///    backward_reads_output_v): it then gets an empty matrix in its place.
///    A layer with `static constexpr bool overwrites_grads = true` instead sets slots.grads to
///    the gradient when ctx.overwrite_grads is true (whatever it held; zero for 0 rows).
///  - Batches of 0 rows must work: with synchronising layers every worker runs every step, even
///    with an empty share, so that the collectives of all workers stay matched.
///  - `name()`: a short label such as "Dense<256>" for describe() and diagnostics.
template <class L>
concept BoundLayer = requires {
    typename L::input_shape;
    typename L::output_shape;
    { L::param_count } -> std::convertible_to<std::size_t>;
    { L::state_count } -> std::convertible_to<std::size_t>;
    { L::name() } -> std::convertible_to<std::string>;
}
&&requires(L& layer, const LayerSlots& slots, ConstMatrix x, Matrix y, ConstMatrix cy, ConstMatrix dy,
           Matrix dx, const StepContext& ctx, std::span<float> block, Rng& rng) {
    L(std::size_t{1});
    L::initialize(block, block, rng);
    layer.forward(slots, x, y, ctx);
    layer.backward(slots, x, cy, dy, dx, ctx);
};

/// Tag of the passes a layer offers when it declares `fuses_relu`, so that Sequential can run a
/// ReLU that follows the layer inside it and skip the ReLU layer itself (whose output shares the
/// layer's buffer):
///   forward(slots, x, y, ctx, FuseRelu{}): y = ReLU(the usual output), applied while the output
///   is still in registers;
///   backward(slots, x, y, dy, dx, ctx, FuseRelu{}): y is that activated output and dy the
///   gradient with respect to it; the layer applies the ReLU's derivative itself, exactly as the
///   ReLU layer would (dy * derivative_from_output(y)), where its data is already in cache.
struct FuseRelu {};

/// Whether bound layer L offers forward and backward with FuseRelu{}.
template <class L>
inline constexpr bool fuses_relu_v = requires {
    requires L::fuses_relu;
};

/// Whether bound layer L, which fuses_relu, also commutes with ReLU: L(ReLU(x)) == ReLU(L(x)), bit
/// for bit, as for max pooling. Sequential then runs a ReLU that comes just before L inside L's
/// FuseRelu passes, where it touches L's output instead of L's input (see Sequential::relu_by_next).
template <class L>
inline constexpr bool commutes_with_relu_v = requires {
    requires L::commutes_with_relu;
};

/// Whether bound layer L is a ReLU (what a fuses_relu layer can take over).
template <class L>
inline constexpr bool is_relu_v = requires {
    requires L::is_relu;
};

/// Whether bound layer L honours StepContext::overwrite_grads (see BoundLayer).
template <class L>
inline constexpr bool overwrites_grads_v = requires {
    requires L::overwrites_grads;
};

/// Whether bound layer L's backward reads its input x (true unless L declares
/// `static constexpr bool backward_reads_input = false`). A layer that declares it false gets an
/// empty x in backward and takes its row count from dy; Sequential may then keep the layer's
/// input only as long as the forward pass needs it (Sequential::block_local).
template <class L>
inline constexpr bool backward_reads_input_v = !requires {
    requires !L::backward_reads_input;
};

/// Whether bound layer L's plain backward reads its output y (true unless L declares
/// `static constexpr bool backward_reads_output = false`); as backward_reads_input_v. Its FuseRelu
/// backward always gets y, which it masks the gradient by.
template <class L>
inline constexpr bool backward_reads_output_v = !requires {
    requires !L::backward_reads_output;
};

/// Whether bound layer L is row-wise: its forward and its backward may each be called on
/// consecutive row blocks of one batch (StepContext::part_first, part_rows; rows in order, the
/// forward's blocks all before the backward's) with the same results, bit for bit, as one call on
/// the whole batch. Per-row scratch is then indexed by part_first + local row, and a parameter
/// gradient is summed over the blocks in row order as over the batch: started by the first
/// block (first_part) and finished by the last (last_part).
template <class L>
inline constexpr bool row_wise_v = requires {
    requires L::row_wise;
};

/// Whether bound layer L is elementwise (`static constexpr bool elementwise = true`): its forward
/// and backward may be given any block of columns of x, y, dy and dx (views with a stride), each
/// element computed on its own, and its backward may write dx over dy (the same memory). A
/// tensor-parallel team runs it on the columns the thread that made them owns, in place.
template <class L>
inline constexpr bool elementwise_v = requires {
    requires L::elementwise;
};

/// Whether bound layer L splits by inputs (`static constexpr bool splits_inputs = true`), what a
/// tensor-parallel team needs of every layer with parameters. Each member owns a range of inputs
/// (whole rows of a Dense layer's W) and a range of outputs (their biases); L then offers, the
/// whole passes being the same calls on everything:
///   forward_inputs(slots, x, part, inputs, ctx): part = those inputs' contribution to every
///   output (reads x[:, inputs] only); the team sums the members' parts;
///   add_bias(slots, y, outputs): y[:, outputs] += the biases, after the sum;
///   backward_inputs(slots, x, dy, dx, inputs, ctx): the gradient of the inputs' parameters and
///   dx[:, inputs] (reads all of dy);
///   bias_gradient(slots, dy, outputs, ctx): the gradient of the outputs' biases;
///   for_each_part_range(inputs, outputs, fn): fn(first, count) over the parameter offsets of
///   those parts, which only their member ever reads or writes (so it updates them too).
template <class L>
inline constexpr bool splits_inputs_v = requires {
    requires L::splits_inputs;
};

/// A layer spec is what users write in Sequential<...>: it has `bind<InputShape>` giving a
/// BoundLayer, and `accepts<InputShape>` saying whether that input is valid (checked with a
/// readable static_assert before bind is instantiated). A layer that can reject an input may say
/// why in its own words: a member template `reject_input<In>` whose body is
/// `static_assert(accepts<In>, "...")`, which Sequential instantiates for a rejected input only
/// (without the static_assert nothing would stop the build: it must assert). A layer whose own
/// parameters are invalid (a size of 0) accepts no input and asserts only at class scope
/// (`static_assert(accepts<In> || !sizes_valid, ...)` in reject_input), so that its one message is the
/// build's only error.
template <class Spec>
concept LayerSpec = requires {
    Spec::is_pardl_layer;
};

/// Base for layer specs: marks the type as a layer for diagnostics.
struct LayerSpecBase {
    static constexpr bool is_pardl_layer = true;
};

/// Default no-op pieces for bound layers without parameters or state.
struct ParameterFree {
    static constexpr std::size_t param_count = 0;
    static constexpr std::size_t state_count = 0;
    static void initialize(std::span<float>, std::span<float>, Rng&) {}
};

} // namespace pardl
