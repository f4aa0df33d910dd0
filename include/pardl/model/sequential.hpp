// Sequential<Input<...>, Layers...>: a feed-forward model whose layer types, shapes, parameter
// counts and flat-buffer offsets are all computed at compile time. Parameters live in one flat
// buffer owned by the caller, laid out in reverse layer order so that the gradients backward has
// finished form one growing prefix (buckets for overlapped communication are plain slices).
// Each layer's block starts on a cache line (param_alignment); the few floats between blocks are
// padding that stays zero.
#pragma once

#include <algorithm>
#include <array>
#include <cassert>
#include <cstddef>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "pardl/core/errors.hpp"
#include "pardl/core/rng.hpp"
#include "pardl/execution/partition.hpp"
#include "pardl/layers/layer.hpp"
#include "pardl/tensor/buffer.hpp"
#include "pardl/tensor/shape.hpp"
#include "pardl/tensor/view.hpp"

namespace pardl {

/// The first element of a Sequential: the shape of one input sample.
template <std::size_t... Dims>
struct Input {
    using shape = Shape<Dims...>;
};

namespace detail {

/// The check of Input's dimensions, in a class of its own that nothing else reads: after its
/// error the model goes on with input_shape_t's stand-in, and reports nothing more (Clang, like
/// GCC, then stays quiet; a Shape<0> would fail its own assertion and make every use of the model
/// another error).
template <std::size_t... Dims>
struct input_dims_are_positive {
    static constexpr bool value = sizeof...(Dims) > 0 && ((Dims > 0) && ...);
    static_assert(value, "pardl: Input<...> needs one or more dimensions, each positive (Input<784>, "
                         "Input<1, 28, 28>)");
};
/// Input's shape, or Shape<1> in place of one that input_dims_are_positive rejects.
template <std::size_t... Dims>
using input_shape_t =
    std::conditional_t<sizeof...(Dims) != 0 && ((Dims > 0) && ...), Shape<Dims...>, Shape<1>>;

template <class T>
struct is_input : std::false_type {};
template <std::size_t... D>
struct is_input<Input<D...>> : std::true_type {};

/// Stand-in used after a failed check so that only the one readable static_assert is reported.
template <ShapeType In>
struct PassThrough : ParameterFree {
    using input_shape = In;
    using output_shape = In;
    static std::string name() { return "?"; }
    explicit PassThrough(std::size_t) {}
    void forward(const LayerSlots&, ConstMatrix, Matrix, const StepContext&) {}
    void backward(const LayerSlots&, ConstMatrix, ConstMatrix, ConstMatrix, Matrix, const StepContext&) {}
};

template <class Spec, class In>
constexpr bool spec_accepts() {
    if constexpr (LayerSpec<Spec>)
        return Spec::template accepts<In>;
    else
        return false;
}

// The names of these templates are the diagnostic: GCC and Clang print the instantiation with its
// arguments ("In instantiation of 'struct pardl::detail::sequential_layer_rejects_input_shape<3,
// pardl::Dense<10>, pardl::Shape<32, 13, 13> >'") right above the failed assertion.
template <std::size_t LayerIndex, class Layer, class InputShape>
struct sequential_layer_is_not_a_layer {
    static constexpr bool value = LayerSpec<Layer>;
    static_assert(
        value,
        "pardl::Sequential: this element is not a pardl layer (its index, type and input shape are the "
        "template arguments of sequential_layer_is_not_a_layer<LayerIndex, Layer, InputShape> above)");
};

/// Layer::reject_input<In>, whose static_assert states in the layer's own words what it needs,
/// instantiated only for an input the layer rejects.
template <bool Rejected, class Layer, class In>
struct layer_explains_rejection {};
template <class Layer, class In>
struct layer_explains_rejection<true, Layer, In> : Layer::template reject_input<In> {};

template <std::size_t LayerIndex, class Layer, class InputShape>
struct sequential_layer_rejects_input_shape {
    static constexpr bool value = !LayerSpec<Layer> || spec_accepts<Layer, InputShape>();
    /// Whether the layer says itself what it needs (every pardl layer that can reject an input).
    static constexpr bool explains = requires { typename Layer::template reject_input<InputShape>; };
    static constexpr bool layer_explains = !value && explains;
    static_assert(sizeof(layer_explains_rejection<layer_explains, Layer, InputShape>) > 0);
    static_assert(value || explains,
                  "pardl::Sequential: this layer cannot take its input shape (its index, type and input "
                  "shape are the template arguments of sequential_layer_rejects_input_shape<LayerIndex, "
                  "Layer, InputShape> above)");
};

template <std::size_t Index, class In, class Spec>
struct BindOne {
    using type = typename Spec::template bind<In>;
};
template <std::size_t Index, class In>
struct BindFallback {
    using type = PassThrough<In>;
};

template <std::size_t Index, class In, class Spec>
using bind_layer_t = typename std::conditional_t<spec_accepts<Spec, In>(), BindOne<Index, In, Spec>,
                                                 BindFallback<Index, In>>::type;

template <std::size_t Index, class In, class... Specs>
struct Chain;
template <std::size_t Index, class In>
struct Chain<Index, In> {
    using layers = std::tuple<>;
    using output = In;
    static constexpr bool valid = true;
};
template <std::size_t Index, class In, class Spec, class... Rest>
struct Chain<Index, In, Spec, Rest...> {
    // Whether this layer takes its input: computed from the layer alone, so that it stays a
    // constant on failure (Clang does not treat a value whose initializer failed a static_assert
    // as one, and would then report every use of the chain below as another error).
    static constexpr bool accepted = LayerSpec<Spec> && spec_accepts<Spec, In>();
    // The checks, instantiated (sizeof needs the complete class) for their static_asserts only:
    // the failing one fires, with the index, the layer and the shape in its name.
    static_assert(sizeof(sequential_layer_is_not_a_layer<Index, Spec, In>) +
                      sizeof(sequential_layer_rejects_input_shape<Index, Spec, In>) >
                  0);
    // On failure PassThrough keeps the rest of the chain quiet.
    using layer = std::conditional_t<accepted, bind_layer_t<Index, In, Spec>, PassThrough<In>>;
    static_assert(BoundLayer<layer>,
                  "pardl::Sequential: this layer's bind<> does not model BoundLayer (layers/layer.hpp)");
    using next = Chain<Index + 1, typename layer::output_shape, Rest...>;
    using layers =
        decltype(std::tuple_cat(std::declval<std::tuple<layer>>(), std::declval<typename next::layers>()));
    using output = typename next::output;
    /// Whether every layer takes its input (computed without the asserting checks, so that code
    /// downstream, the Trainer's, can stay quiet about a model that already has its error).
    static constexpr bool valid = accepted && next::valid;
};

} // namespace detail

template <class InputSpec, class... Specs>
class Sequential {
    static_assert(
        detail::is_input<InputSpec>::value,
        "pardl::Sequential: the first element must be Input<dims...> (e.g. Input<784> or Input<1, 28, 28>)");
    static_assert(sizeof...(Specs) > 0, "pardl::Sequential: a model needs at least one layer after Input");
};

template <std::size_t... Dims, class... Specs>
class Sequential<Input<Dims...>, Specs...> {
    static_assert(sizeof...(Specs) > 0, "pardl::Sequential: a model needs at least one layer after Input");
    static_assert(sizeof(detail::input_dims_are_positive<Dims...>) > 0);

public:
    /// Input's shape, or after its error (no dimension, or one of 0) a stand-in.
    using input_shape = detail::input_shape_t<Dims...>;

private:
    using chain = detail::Chain<0, input_shape, Specs...>;

public:
    /// False when a layer cannot take its input (the model's build already says which).
    static constexpr bool valid = chain::valid;
    using layer_types = typename chain::layers;
    using output_shape = typename chain::output;
    static constexpr std::size_t layer_count = sizeof...(Specs);

    template <std::size_t I>
    using layer_t = std::tuple_element_t<I, layer_types>;

private:
    template <std::size_t... I>
    static constexpr auto collect(std::index_sequence<I...>, auto member) {
        return std::array<std::size_t, layer_count>{member(std::type_identity<layer_t<I>>{})...};
    }
    static constexpr auto indices = std::make_index_sequence<layer_count>{};

    /// Offsets of per-layer blocks laid out in reverse layer order: the last layer starts at 0,
    /// and every non-empty block at a multiple of `align` floats.
    static constexpr std::array<std::size_t, layer_count>
    reverse_offsets(std::array<std::size_t, layer_count> n, std::size_t align) {
        std::array<std::size_t, layer_count> off{};
        std::size_t acc = 0;
        for (std::size_t i = layer_count; i-- > 0;) {
            off[i] = n[i] == 0 ? acc : (acc + align - 1) / align * align;
            acc = off[i] + n[i];
        }
        return off;
    }

public:
    static constexpr std::array<std::size_t, layer_count> param_counts =
        collect(indices, []<class L>(std::type_identity<L>) { return L::param_count; });
    static constexpr std::array<std::size_t, layer_count> state_counts =
        collect(indices, []<class L>(std::type_identity<L>) { return L::state_count; });
    static constexpr std::array<std::size_t, layer_count> output_sizes =
        collect(indices, []<class L>(std::type_identity<L>) { return L::output_shape::size; });
    /// Floats to which every layer's parameter block is aligned: 64 bytes, one cache line and one
    /// AVX-512 vector. The GEMM reads a Dense layer's weights in place as its B operand; from an
    /// unaligned block every vector load of them straddled two cache lines, and W-CNN's
    /// Dense<256> forward (whose block followed Dense<10>'s 2570 floats) took 1.8 ms in a
    /// training step instead of 1.3.
    static constexpr std::size_t param_alignment = cache_line_floats;
    static constexpr std::array<std::size_t, layer_count> param_offsets =
        reverse_offsets(param_counts, param_alignment);
    static constexpr std::array<std::size_t, layer_count> state_offsets = reverse_offsets(state_counts, 1);
    /// Size of the flat parameter (and gradient) buffer in floats: every block and the padding
    /// between them. The buffer itself must be 64-byte aligned (AlignedBuffer, Communicator::allocate).
    static constexpr std::size_t param_count = [] {
        std::size_t end = 0;
        for (std::size_t i = 0; i < layer_count; ++i) end = std::max(end, param_offsets[i] + param_counts[i]);
        return end;
    }();
    /// The model's learnable parameters: param_count less the padding.
    static constexpr std::size_t learnable_param_count = [] {
        std::size_t s = 0;
        for (auto n : param_counts) s += n;
        return s;
    }();
    static constexpr std::size_t state_count = [] {
        std::size_t s = 0;
        for (auto n : state_counts) s += n;
        return s;
    }();

    /// Zeroes the padding between the blocks of a parameter-sized buffer (a few floats a layer).
    static void zero_padding(std::span<float> buffer) {
        std::size_t end = 0;
        for_each_param_block([&](std::size_t first, std::size_t count) {
            std::fill(buffer.begin() + static_cast<std::ptrdiff_t>(end),
                      buffer.begin() + static_cast<std::ptrdiff_t>(first), 0.0f);
            end = first + count;
        });
    }

    /// Calls fn(first, count) for each layer's parameter block in buffer order (last layer
    /// first), skipping the padding: what a fingerprint of the parameters reads.
    template <class Fn>
    static void for_each_param_block(Fn&& fn) {
        for (std::size_t i = layer_count; i-- > 0;)
            if (param_counts[i] != 0) fn(param_offsets[i], param_counts[i]);
    }
    /// Multiply-adds of one sample's forward pass per layer (layers without a `macs` member
    /// count 0: their elementwise work is negligible next to the GEMMs).
    static constexpr std::array<std::size_t, layer_count> layer_macs =
        collect(indices, []<class L>(std::type_identity<L>) -> std::size_t {
            if constexpr (requires { L::macs; })
                return L::macs;
            else
                return 0;
        });
    /// Floating-point operations of one training step per sample: forward (2 per multiply-add),
    /// weight gradient (as many again) and input gradient (as many again, except the first layer,
    /// whose input gradient is never computed). W-MLP: 1,007,104.
    static constexpr std::size_t training_flops_per_sample = [] {
        std::size_t f = 0;
        for (std::size_t i = 0; i < layer_count; ++i) f += (i == 0 ? 4 : 6) * layer_macs[i];
        return f;
    }();
    static constexpr std::size_t inference_flops_per_sample = [] {
        std::size_t f = 0;
        for (auto m : layer_macs) f += 2 * m;
        return f;
    }();
    /// Whether layer I is a ReLU that the layer after it runs (relu_by_next): that layer commutes
    /// with ReLU (max pooling), so the ReLU is applied to its smaller output instead. Preferred
    /// over fusing into the layer before, which would write, reread and mask the larger tensor.
    /// (Not for a ReLU on the model's input: there is no layer output to stand in for its own.)
    template <std::size_t I>
    static constexpr bool relu_taken_by_next() {
        if constexpr (I == 0 || I + 1 >= layer_count)
            return false;
        else
            return is_relu_v<layer_t<I>> && fuses_relu_v<layer_t<I + 1>> &&
                   commutes_with_relu_v<layer_t<I + 1>>;
    }
    /// Whether layer I is a ReLU that layer I - 1 can take over (see `fused`).
    template <std::size_t I>
    static constexpr bool relu_taken_by_previous() {
        if constexpr (I == 0)
            return false;
        else
            return is_relu_v<layer_t<I>> && fuses_relu_v<layer_t<I - 1>> && !relu_taken_by_next<I>();
    }
    /// relu_by_next[i]: layer i is a ReLU that layer i + 1 applies to its own output in its
    /// forward and backward (FuseRelu). Its output is not materialised: the buffer Workspace::output
    /// gives for it holds its input.
    static constexpr std::array<bool, layer_count> relu_by_next =
        []<std::size_t... I>(std::index_sequence<I...>) {
        return std::array<bool, layer_count>{relu_taken_by_next<I>()...};
    }
    (indices);
    /// fused[i]: layer i is a ReLU that another layer runs inside its own forward and backward
    /// (FuseRelu): layer i - 1, whose output buffer it then shares, or layer i + 1 (relu_by_next).
    /// Its own passes do nothing.
    static constexpr std::array<bool, layer_count> fused = []<std::size_t... I>(std::index_sequence<I...>) {
        return std::array<bool, layer_count>{(relu_taken_by_previous<I>() || relu_taken_by_next<I>())...};
    }
    (indices);
    /// Whether layer i runs a ReLU inside its own forward and backward: the one after it (fused
    /// into it) or the one before it (relu_by_next).
    static constexpr bool runs_relu(std::size_t i) {
        const bool next = i + 1 < layer_count && fused[i + 1] && !relu_by_next[i + 1];
        const bool previous = i > 0 && relu_by_next[i - 1];
        return next || previous;
    }

    /// Layers [0, row_wise_prefix) are row-wise (row_wise_v; a CNN's convolutions, pooling and
    /// activations up to its Flatten) and run on blocks of block_rows rows, all of them on one
    /// block before the next: a layer then reads what the one before it wrote from the L2 cache,
    /// where over a whole batch it reads it back from memory (W-CNN's first convolution writes
    /// 6.4 MB a batch of 64, and its gradient as much). A ReLU left for a layer beyond the prefix
    /// to run stays outside it.
    static constexpr std::size_t row_wise_prefix = []<std::size_t... I>(std::index_sequence<I...>) {
        std::size_t n = 0;
        bool open = true;
        ((open = open && row_wise_v<layer_t<I>>, n += open ? 1 : 0), ...);
        while (n > 0 && relu_by_next[n - 1]) --n;
        return n;
    }
    (indices);

private:
    /// reads_input[i], reads_output[i]: whether layer i's backward reads its input, its output
    /// (backward_reads_input_v, backward_reads_output_v; the output always when the layer runs a
    /// ReLU, whose derivative it takes from that output). The others get an empty matrix.
    static constexpr std::array<bool, layer_count> reads_input =
        []<std::size_t... I>(std::index_sequence<I...>) {
        return std::array<bool, layer_count>{backward_reads_input_v<layer_t<I>>...};
    }
    (indices);
    static constexpr std::array<bool, layer_count> reads_output =
        []<std::size_t... I>(std::index_sequence<I...>) {
        return std::array<bool, layer_count>{(backward_reads_output_v<layer_t<I>> || runs_relu(I))...};
    }
    (indices);
    /// The layer that takes layer i's output buffer as its input: the next one that is not a fused
    /// ReLU (a ReLU that layer i runs shares the buffer; one that the layer after it runs hands
    /// the buffer on). layer_count if there is none.
    static constexpr std::size_t consumer(std::size_t i) {
        std::size_t j = i + 1;
        while (j < layer_count && fused[j]) ++j;
        return j;
    }

public:
    /// block_local[i]: inside the row-wise prefix, layer i's output is read by the next layer's
    /// forward and by no backward (neither its own nor that layer's), so it lives in a buffer of
    /// one block's rows that every block reuses instead of a whole-batch one. W-CNN's convolution
    /// outputs, which only the max pooling after each reads, are 6.4 and 3.2 MB a batch of 64:
    /// written whole, they went out to memory, and came back in the next step, for nothing.
    static constexpr std::array<bool, layer_count> block_local = [] {
        std::array<bool, layer_count> local{};
        for (std::size_t i = 0; i < layer_count; ++i) {
            const std::size_t next = consumer(i);
            local[i] = !fused[i] && next < row_wise_prefix && !reads_output[i] && !reads_input[next];
        }
        return local;
    }();
    /// Whether Workspace::output(i) keeps only the last block's rows of a batch run in several
    /// blocks (block_local, also for a fused ReLU that shares such a buffer).
    static constexpr bool output_is_block_local(std::size_t i) { return block_local[storage(i)]; }
    /// Floats in the widest row the prefix reads or writes (its input, outputs and gradients).
    static constexpr std::size_t prefix_width = [] {
        std::size_t m = row_wise_prefix > 0 ? input_shape::size : 0;
        for (std::size_t i = 0; i < row_wise_prefix; ++i) m = std::max(m, output_sizes[i]);
        return m;
    }();
    /// Rows per block of the prefix: what keeps a block's widest tensor near 256 KB, a quarter of
    /// a Zen 4 core's L2, so that a layer's input and output blocks, its scratch and the two
    /// gradient blocks fit together. (W-CNN: 100 KB a row for the first convolution's output, so
    /// 2 rows; 4 and 8 measured slower in a training step, 1 about the same.)
    static constexpr std::size_t prefix_block_bytes = 256 * 1024;
    static constexpr std::size_t block_rows =
        row_wise_prefix == 0 ? 0
                             : std::max<std::size_t>(1, prefix_block_bytes / (prefix_width * sizeof(float)));
    /// Floats per row of the two whole-batch gradient buffers: the widest gradient a layer past
    /// the prefix reads or writes, and the loss's. The prefix's own go through block buffers, so
    /// W-CNN's are 3136 floats a row where its widest tensor has 25088.
    static constexpr std::size_t gradient_width = [] {
        std::size_t m = output_shape::size;
        for (std::size_t i = row_wise_prefix; i < layer_count; ++i)
            m = std::max({m, output_sizes[i], i == 0 ? input_shape::size : output_sizes[i - 1]});
        return m;
    }();

    /// Per-worker memory: the bound layers' scratch, one activation buffer per layer, two
    /// ping-pong gradient buffers (gradient_width) and two for a block of the prefix, all sized
    /// once for `max_rows` rows.
    class Workspace {
    public:
        explicit Workspace(std::size_t max_rows)
            : max_rows_(max_rows), layers_(make_layers(max_rows, indices)),
              grad_a_(max_rows * gradient_width), grad_b_(max_rows * gradient_width) {
            for (std::size_t i = 0; i < layer_count; ++i)
                if (!fused[i] && !block_local[i]) activations_[i].resize(max_rows * output_sizes[i]);
            set_block_rows(block_rows); // sizes the block_local ones
        }
        std::size_t max_rows() const { return max_rows_; }
        /// Rows per block of the row-wise prefix (Sequential::block_rows unless set; 0 runs each
        /// pass on the whole batch at once). Every setting gives the same results, bit for bit.
        /// Allocates: call it before training, not between steps.
        void set_block_rows(std::size_t n) {
            prefix_rows_ = n == 0 ? max_rows_ : std::min(n, max_rows_);
            part_a_.resize(prefix_rows_ * prefix_width);
            part_b_.resize(prefix_rows_ * prefix_width);
            for (std::size_t i = 0; i < layer_count; ++i)
                if (block_local[i]) activations_[i].resize(prefix_rows_ * output_sizes[i]);
        }
        /// Sizes the part buffers of a tensor-parallel team of `members` (forward_team): two for
        /// every member but the first, which writes its parts into the layers' outputs.
        /// Allocates: call it before training, not between steps.
        void set_team(std::size_t members) {
            team_members_ = std::max<std::size_t>(1, members);
            team_parts_.resize(2 * (team_members_ - 1) * team_part_size());
        }
        /// Output of layer i for the last forward batch. A layer followed by a fused ReLU holds the
        /// activated output (the ReLU's own); a ReLU that the next layer runs (relu_by_next) gives
        /// its input. An output that only lives block by block (output_is_block_local) is empty
        /// here unless the batch was a single block (set_block_rows(0) makes every batch one).
        ConstMatrix output(std::size_t i) const {
            if (output_is_block_local(i) && rows_ > prefix_rows_) return {};
            return {activations_[storage(i)].data(), rows_, output_sizes[i]};
        }
        /// Where the loss writes d(objective)/d(model output) for the last forward batch.
        Matrix output_gradient() { return {grad_a_.data(), rows_, output_shape::size}; }
        std::size_t rows() const { return rows_; }

    private:
        friend class Sequential;
        /// Layer i's output for rows [first, first + n) of the current pass: in the whole-batch
        /// buffer at row `first`, or at the start of a block_local one.
        Matrix output_rows(std::size_t i, std::size_t first, std::size_t n) {
            const std::size_t at = storage(i);
            // A block-local buffer holds one block, at its start; with a single block for the
            // whole batch (set_block_rows(0), as a tensor-parallel team has) rows keep their place.
            const bool one_block = block_local[at] && prefix_rows_ < max_rows_;
            return {activations_[at].data() + (one_block ? 0 : first * output_sizes[i]), n, output_sizes[i]};
        }
        /// Floats of one part buffer, whole cache lines so that no two share one.
        std::size_t team_part_size() const { return (max_rows_ * widest_split_output + 15) / 16 * 16; }
        /// Member `member`'s (>= 1) part buffer number `which` (0 or 1), as rows x width.
        Matrix team_part(std::size_t which, std::size_t member, std::size_t rows, std::size_t width) {
            assert(member >= 1 && member < team_members_ && which < 2 && rows * width <= team_part_size());
            return {team_parts_.data() + (which * (team_members_ - 1) + member - 1) * team_part_size(), rows,
                    width};
        }
        template <std::size_t... I>
        static layer_types make_layers(std::size_t rows, std::index_sequence<I...>) {
            return layer_types{layer_t<I>(((void)I, rows))...};
        }
        std::size_t max_rows_;
        std::size_t rows_ = 0;
        std::size_t prefix_rows_ = 0;
        layer_types layers_;
        std::array<AlignedBuffer<float>, layer_count> activations_;
        AlignedBuffer<float> grad_a_, grad_b_;
        /// One block's gradients inside the prefix, in turn: they never leave the cache.
        AlignedBuffer<float> part_a_, part_b_;
        std::size_t team_members_ = 1;
        AlignedBuffer<float> team_parts_; ///< see set_team
    };

    /// Fills the parameter (and state) buffers from `seed`: layer i draws from Rng(seed, i), so
    /// adding a layer at the end does not change the others' initial values.
    static void initialize(std::span<float> params, std::span<float> state, std::uint64_t seed) {
        zero_padding(params);
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            (init_layer<I>(params, state, seed), ...);
        }
        (indices);
    }

    /// Runs every layer on x (rows <= ws.max_rows()) and returns the model output (a view into ws).
    /// Throws ConfigError where the arguments do not fit the model: the raw call, which a Trainer
    /// makes for its workers, writes into ws and reads params by the model's offsets.
    static ConstMatrix forward(std::span<const float> params, std::span<float> state, ConstMatrix x,
                               Workspace& ws, const StepContext& ctx) {
        PARDL_REQUIRE(x.rows <= ws.max_rows() && x.cols == input_shape::size && x.stride >= x.cols,
                      ConfigError, "Sequential::forward: x is ", x.rows, " x ", x.cols, " (stride ", x.stride,
                      ") but the model takes rows of ", input_shape::size,
                      " values, and the workspace at most ", ws.max_rows(), " rows");
        PARDL_REQUIRE(params.size() >= param_count && state.size() >= state_count, ConfigError,
                      "Sequential::forward: ", params.size(), " parameters and ", state.size(),
                      " state values given, the model has ", param_count, " and ", state_count);
        ws.rows_ = x.rows;
        forward_prefix(params, state, x, ws, ctx);
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            (forward_layer<row_wise_prefix + I>(params, state, x, ws, ctx, 0, x.rows), ...);
        }
        (std::make_index_sequence<layer_count - row_wise_prefix>{});
        return ws.output(layer_count - 1);
    }

    /// Back-propagates ws.output_gradient() (written by the loss) through every layer, adding
    /// parameter gradients into `grads` (writing them, whatever `grads` held, when
    /// ctx.overwrite_grads). If `dx` is not empty it receives d(objective)/d(input).
    static void backward(std::span<const float> params, std::span<float> grads, std::span<float> state,
                         ConstMatrix x, Workspace& ws, const StepContext& ctx, Matrix dx = {}) {
        PARDL_REQUIRE(params.size() >= param_count && (grads.empty() || grads.size() >= param_count) &&
                          state.size() >= state_count,
                      ConfigError, "Sequential::backward: ", params.size(), " parameters, ", grads.size(),
                      " gradients and ", state.size(), " state values given, the model has ", param_count,
                      " and ", state_count);
        float* dy = ws.grad_a_.data();
        float* spare = ws.grad_b_.data();
        if (ctx.overwrite_grads && !grads.empty()) zero_padding(grads);
        const std::size_t rows = ws.rows_;
        // Past the prefix, whole batches through two buffers in turn.
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            // Fold over the reversed indices.
            ((backward_layer<layer_count - 1 - I>(params, grads, state, x, ws, ctx, dy, spare, dx, 0, rows)
                  ? std::swap(dy, spare)
                  : void()),
             ...);
        }
        (std::make_index_sequence<layer_count - row_wise_prefix>{});
        backward_prefix(params, grads, state, x, rows, ws, ctx, dy, dx);
    }

    // ---- tensor parallelism: a team of threads computes one batch together ------------------
    // Every member works on the whole batch in one shared Workspace (set_block_rows(0) and
    // set_team(members)). A layer that splits_inputs (Dense) is split by its inputs: member t
    // multiplies its share of the input columns (line_share) by its rows of W, the members' parts
    // are summed, and each sums and biases its share of the output columns, which is also its
    // share of the next layer's inputs. An elementwise layer runs on the same columns, any other
    // row-wise layer on a share of rows, anything else on member 0. So the weights, their
    // gradients and their updates stay on one core each, in contiguous blocks (interleaved
    // ownership made every core fetch its neighbour's cache lines), and what crosses between the
    // cores is the parts of each layer's output and output gradient. `Team` is
    // TensorParallelExecutor's TeamMember: index(), size(), run(fn), phase(fn) and sync().

    //
    // A row-wise prefix with parameters (a CNN's convolutions, which cannot split by inputs) runs
    // as data parallelism inside the team instead: member t runs layers [0, team_prefix) on its
    // share of the rows (balanced_range) in a workspace of its own, block by block as the serial
    // pass does, writes its rows of the prefix's output into the team's workspace, and after the
    // team's backward runs the prefix's backward on the same rows into gradients of its own; the
    // members then sum those, each its share of every prefix layer's block (for_each_prefix_share),
    // which it also updates. For W-CNN, whose Dense<256> holds 97% of the parameters, a core then
    // reads from the other about 0.54 MB a step at batch 64 (its columns of the other's rows of
    // the prefix's output and of its gradient, 0.4 MB; the Dense layers' parts; the convolutions'
    // gradient and parameters) instead of data parallelism's half of the gradient and of the
    // updated parameters (3.3 MB).

    /// The layers a team runs as data parallelism: the row-wise prefix when one of its layers has
    /// parameters, else none (a parameter-free prefix is split like any other layer).
    static constexpr std::size_t team_prefix = [] {
        std::size_t prefix_params = 0;
        for (std::size_t i = 0; i < row_wise_prefix; ++i) prefix_params += param_counts[i];
        return prefix_params > 0 ? row_wise_prefix : 0;
    }();

    /// Whether the model can run as a tensor-parallel team: every layer with parameters or state
    /// past team_prefix splits by inputs (splits_inputs_v), and the prefix keeps no state (a
    /// member's rows alone would update it).
    static constexpr bool team_splittable = []<std::size_t... I>(std::index_sequence<I...>) {
        return ((I < team_prefix
                     ? state_counts[I] == 0
                     : (splits_inputs_v<layer_t<I>> || (param_counts[I] == 0 && state_counts[I] == 0))) &&
                ...);
    }
    (indices);

    /// Whether a team member reads layer I's input by its own share of columns (so the model's
    /// input, for I = 0, can be gathered column by column, each member its own).
    template <std::size_t I>
    static constexpr bool team_by_columns =
        I >= team_prefix && !fused[I] &&
        (splits_inputs_v<layer_t<I>> || (elementwise_v<layer_t<I>> && !runs_relu(I)));

    /// What the team's members need for a data-parallel prefix (team_prefix > 0), indexed by
    /// member: the workspace it runs its rows in and the parameter-sized buffer that receives its
    /// prefix gradients. Member 0's are the team's own workspace and gradients.
    struct TeamPrefix {
        std::span<Workspace* const> workspaces;
        std::span<const std::span<float>> grads;
    };

    /// forward() as a team; x must be complete in the columns member t reads
    /// (line_share(input width, t, members) when team_by_columns<0>, else entirely). Returns, on
    /// every member, the model output once all members have written their parts.
    template <class Team>
    static ConstMatrix forward_team(std::span<const float> params, std::span<float> state, ConstMatrix x,
                                    Workspace& ws, const StepContext& ctx, Team& team,
                                    TeamPrefix prefix = {}) {
        static_assert(team_splittable);
        ws.rows_ = x.rows;
        if constexpr (team_prefix > 0) {
            team.run([&] {
                const std::size_t member = team.index();
                const Range r = balanced_range(x.rows, member, team.size());
                if (r.empty()) return;
                assert(member == 0 || (prefix.workspaces.size() > member && prefix.grads.size() > member));
                Workspace& own = member == 0 ? ws : *prefix.workspaces[member];
                assert(member == 0 || &own != &ws);
                forward_prefix(params, state, x.row_block(r.begin, r.size()), own, member_context(ctx, r));
                if (member != 0) { // member 0 wrote its rows (the first) in place
                    const ConstMatrix mine = own.output_rows(team_prefix - 1, 0, r.size());
                    std::copy(mine.data, mine.data + mine.rows * mine.cols,
                              ws.output_rows(team_prefix - 1, r.begin, r.size()).data);
                }
            });
            team.sync(); // the layer after the prefix reads every row
        }
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            (forward_layer_team<team_prefix + I>(params, state, x, ws, ctx, team), ...);
        }
        (std::make_index_sequence<layer_count - team_prefix>{});
        team.sync();
        return ws.output(layer_count - 1);
    }

    /// backward() as a team, after the loss has written ws.output_gradient() and the team has
    /// synchronised; `grads` is not empty. Each member writes the gradients of the parameters it
    /// owns (for_each_owned; a data-parallel prefix's are summed from the members' own);
    /// on return (after a final sync) every gradient and dx are complete.
    template <class Team>
    static void backward_team(std::span<const float> params, std::span<float> grads, std::span<float> state,
                              ConstMatrix x, Workspace& ws, const StepContext& ctx, Team& team,
                              Matrix dx = {}, TeamPrefix prefix = {}) {
        static_assert(team_splittable);
        assert(!grads.empty());
        float* dy = ws.grad_a_.data();
        float* spare = ws.grad_b_.data();
        const std::size_t member = team.index(), members = team.size(), rows = ws.rows_;
        if (ctx.overwrite_grads && member == 0) zero_padding(grads);
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            ((backward_layer_team<layer_count - 1 - I>(params, grads, state, x, ws, ctx, team, dy, spare, dx)
                  ? std::swap(dy, spare)
                  : void()),
             ...);
        }
        (std::make_index_sequence<layer_count - team_prefix>{});
        if constexpr (team_prefix > 0) {
            assert(ctx.overwrite_grads); // the members' own gradients are written, not added to
            team.sync();                 // the prefix's output gradient is complete in every column
            team.run([&] {
                const Range r = balanced_range(rows, member, members);
                if (r.empty()) return;
                Workspace& own = member == 0 ? ws : *prefix.workspaces[member];
                backward_prefix(params, member == 0 ? grads : prefix.grads[member], state,
                                x.row_block(r.begin, r.size()), r.size(), own, member_context(ctx, r),
                                dy + r.begin * output_sizes[team_prefix - 1],
                                dx.empty() ? dx : dx.row_block(r.begin, r.size()));
            });
            team.sync();
            // Each member sums its share of the prefix's gradients over the members that had
            // rows, in member order.
            team.run([&] {
                for_each_prefix_share(member, members, [&](std::size_t first, std::size_t count) {
                    float* sum = grads.data() + first;
                    for (std::size_t u = 1; u < members && !balanced_range(rows, u, members).empty(); ++u) {
                        const float* other = prefix.grads[u].data() + first;
                        for (std::size_t i = 0; i < count; ++i) sum[i] += other[i];
                    }
                });
            });
        }
        team.sync();
    }

    /// Calls fn(first, count) for every parameter range member `part` of `parts` owns (its parts
    /// of each layer that splits_inputs). The ranges of all members partition the learnable
    /// parameters.
    template <class Fn>
    static void for_each_owned(std::size_t part, std::size_t parts, Fn&& fn) {
        for_each_prefix_share(part, parts, fn);
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            (
                [&] {
                    if constexpr (splits_inputs_v<layer_t<I>>)
                        layer_t<I>::for_each_part_range(
                            line_share(layer_t<I>::input_shape::size, part, parts),
                            line_share(output_sizes[I], part, parts),
                            [&](std::size_t first, std::size_t count) {
                                fn(param_offsets[I] + first, count);
                            });
                }(),
                ...);
        }
        (indices);
    }

    /// Calls fn(first, count) for member `part` of `parts`'s share (line_share) of every
    /// parameter block in the team's data-parallel prefix (none without one).
    template <class Fn>
    static void for_each_prefix_share(std::size_t part, std::size_t parts, Fn&& fn) {
        for (std::size_t i = 0; i < team_prefix; ++i) {
            const Range share = line_share(param_counts[i], part, parts);
            if (!share.empty()) fn(param_offsets[i] + share.begin, share.size());
        }
    }

    template <std::size_t I>
    static LayerSlots slots(std::span<const float> params, std::span<float> grads, std::span<float> state) {
        LayerSlots s;
        s.params = params.subspan(param_offsets[I], param_counts[I]);
        if (!grads.empty()) s.grads = grads.subspan(param_offsets[I], param_counts[I]);
        if (!state.empty()) s.state = state.subspan(state_offsets[I], state_counts[I]);
        return s;
    }

    /// Layer labels ("Dense<256>") in order.
    static std::array<std::string, layer_count> layer_names() {
        return [&]<std::size_t... I>(std::index_sequence<I...>) {
            return std::array<std::string, layer_count>{layer_t<I>::name()...};
        }
        (indices);
    }
    /// Output shapes ("32x14x14") in order.
    static std::array<std::string, layer_count> output_shapes() {
        return [&]<std::size_t... I>(std::index_sequence<I...>) {
            return std::array<std::string, layer_count>{layer_t<I>::output_shape::str()...};
        }
        (indices);
    }
    /// One line naming the architecture, e.g. "784-Dense<256>-ReLU-Dense<10>"; checkpoints store it.
    static std::string signature() {
        std::string s = input_shape::str();
        for (const auto& n : layer_names()) s += "-" + n;
        return s;
    }

private:
    /// The activation buffer that holds layer i's output.
    static constexpr std::size_t storage(std::size_t i) {
        while (i > 0 && fused[i]) --i;
        return i;
    }

    template <std::size_t I>
    static void init_layer(std::span<float> params, std::span<float> state, std::uint64_t seed) {
        Rng rng(seed, I);
        layer_t<I>::initialize(params.subspan(param_offsets[I], param_counts[I]),
                               state.empty() ? state : state.subspan(state_offsets[I], state_counts[I]), rng);
    }

    /// Layer I's input for rows [first, first + n) of the current pass.
    template <std::size_t I>
    static ConstMatrix layer_input(ConstMatrix x, Workspace& ws, std::size_t first, std::size_t n) {
        if constexpr (I == 0)
            return x.row_block(first, n);
        else
            return ws.output_rows(I - 1, first, n);
    }

    /// Layers [0, row_wise_prefix) on every row of x, block by block: a layer's block is read by
    /// the next layer from the cache (see row_wise_prefix). Rows are x's, from ws's row 0.
    static void forward_prefix(std::span<const float> params, std::span<float> state, ConstMatrix x,
                               Workspace& ws, const StepContext& ctx) {
        for_each_block(x.rows, ws.prefix_rows_, ctx,
                       [&](const StepContext& part, std::size_t first, std::size_t n) {
                           [&]<std::size_t... I>(std::index_sequence<I...>) {
                               (forward_layer<I>(params, state, x, ws, part, first, n), ...);
                           }
                           (std::make_index_sequence<row_wise_prefix>{});
                       });
    }

    /// The prefix's backward on the `rows` rows forward_prefix ran, block by block: `entry` holds
    /// the gradient of its output (rows x the prefix's output width), read in place, and inside
    /// it a block's gradients go through the two block buffers in turn.
    static void backward_prefix(std::span<const float> params, std::span<float> grads, std::span<float> state,
                                ConstMatrix x, std::size_t rows, Workspace& ws, const StepContext& ctx,
                                const float* entry, Matrix dx) {
        constexpr std::size_t entry_width = row_wise_prefix > 0 ? output_sizes[row_wise_prefix - 1] : 0;
        for_each_block(rows, ws.prefix_rows_, ctx,
                       [&](const StepContext& part, std::size_t first, std::size_t n) {
                           const float* g = entry + first * entry_width;
                           float* out = ws.part_a_.data();
                           float* other = ws.part_b_.data();
                           [&]<std::size_t... I>(std::index_sequence<I...>) {
                               ((backward_layer<row_wise_prefix - 1 - I>(params, grads, state, x, ws, part, g,
                                                                         out, dx, first, n)
                                     ? (g = out, std::swap(out, other))
                                     : void()),
                                ...);
                           }
                           (std::make_index_sequence<row_wise_prefix>{});
                       });
    }

    /// Calls fn(part, first, n) for rows [first, first + n) of a batch of `rows`, `block` rows at a
    /// time in order; `part` is ctx saying so (StepContext::part_first). A batch of at most one
    /// block is one call on the whole batch with ctx itself, also when it has no rows.
    template <class Fn>
    static void for_each_block(std::size_t rows, std::size_t block, const StepContext& ctx, Fn&& fn) {
        if (row_wise_prefix == 0) return;
        if (rows <= block) {
            fn(ctx, 0, rows);
            return;
        }
        StepContext part = ctx;
        part.part_rows = rows;
        for (std::size_t first = 0; first < rows; first += block) {
            part.part_first = first;
            fn(part, first, std::min(block, rows - first));
        }
    }

    /// The widest output of a layer that splits_inputs: what a member's part of it needs.
    static constexpr std::size_t widest_split_output = [] {
        std::size_t m = 0;
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            ((m = splits_inputs_v<layer_t<I>> ? std::max(m, output_sizes[I]) : m), ...);
        }
        (indices);
        return m;
    }();
    /// How many layers before I split by inputs: consecutive ones use the two part buffers in
    /// turn, so a member never overwrites a part another member is still summing.
    static constexpr std::size_t split_ordinal(std::size_t i) {
        std::size_t n = 0;
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            ((n += (I < i && splits_inputs_v<layer_t<I>>) ? 1 : 0), ...);
        }
        (indices);
        return n;
    }
    /// ctx for a member that runs rows r of the team's batch on its own.
    static StepContext member_context(const StepContext& ctx, Range r) {
        StepContext part = ctx;
        part.first_row = ctx.first_row + r.begin;
        return part;
    }

    /// A layer a team can split neither by inputs nor by columns: fn(part_ctx, first, n) on this
    /// member's share of the rows if it is row-wise, else on member 0 for all of them. Rows need
    /// every column of their input (a sync first), and the layer after reads its own columns of
    /// every row (a sync after).
    template <std::size_t I, class Team, class Fn>
    static void team_row_phase(Team& team, std::size_t rows, const StepContext& ctx, Fn&& fn) {
        team.sync();
        team.phase([&] {
            if constexpr (row_wise_v<layer_t<I>>) {
                const Range r = balanced_range(rows, team.index(), team.size());
                if (r.empty()) return;
                StepContext part = member_context(ctx, r);
                part.part_first = r.begin;
                part.part_rows = rows;
                fn(part, r.begin, r.size());
            } else if (team.index() == 0) {
                fn(ctx, std::size_t{0}, rows);
            }
        });
    }

    template <std::size_t I, class Team>
    static void forward_layer_team(std::span<const float> params, std::span<float> state, ConstMatrix x,
                                   Workspace& ws, const StepContext& ctx, Team& team) {
        if constexpr (!fused[I]) {
            const std::size_t rows = x.rows, member = team.index(), members = team.size();
            auto& layer = std::get<I>(ws.layers_);
            const ConstMatrix in = layer_input<I>(x, ws, 0, rows);
            const Matrix y = ws.output_rows(I, 0, rows);
            const Range outputs = line_share(output_sizes[I], member, members);
            if constexpr (splits_inputs_v<layer_t<I>>) {
                // Member 0 writes its part into y itself, the others into their part buffers; once
                // all are written each member adds the others' parts to its outputs, in member
                // order, then the biases: with one member, exactly the whole forward.
                const Range inputs = line_share(layer_t<I>::input_shape::size, member, members);
                const Matrix part =
                    member == 0 ? y : ws.team_part(split_ordinal(I) % 2, member, rows, output_sizes[I]);
                team.run([&] { layer.forward_inputs(slots<I>(params, {}, state), in, part, inputs, ctx); });
                if (members > 1) team.sync();
                team.run([&] {
                    for (std::size_t u = 1; u < members; ++u) {
                        const Matrix other = ws.team_part(split_ordinal(I) % 2, u, rows, output_sizes[I]);
                        for (std::size_t r = 0; r < rows; ++r) {
                            float* yr = y.row(r);
                            const float* o = other.row(r);
                            for (std::size_t j = outputs.begin; j < outputs.end; ++j) yr[j] += o[j];
                        }
                    }
                    layer.add_bias(slots<I>(params, {}, state), y, outputs);
                });
            } else if constexpr (team_by_columns<I>) {
                team.run([&] {
                    if (!outputs.empty())
                        layer.forward(slots<I>(params, {}, state), in.columns(outputs.begin, outputs.size()),
                                      y.columns(outputs.begin, outputs.size()), ctx);
                });
            } else {
                team_row_phase<I>(team, rows, ctx,
                                  [&](const StepContext& part, std::size_t first, std::size_t n) {
                                      forward_layer<I>(params, state, x, ws, part, first, n);
                                  });
            }
        }
    }

    template <std::size_t I, class Team>
    static bool backward_layer_team(std::span<const float> params, std::span<float> grads,
                                    std::span<float> state, ConstMatrix x, Workspace& ws,
                                    const StepContext& ctx, Team& team, float* dy, float* dx_buffer,
                                    Matrix dx_out) {
        if constexpr (fused[I]) {
            return false;
        } else {
            const std::size_t rows = ws.rows_, member = team.index(), members = team.size();
            constexpr std::size_t in_width = layer_t<I>::input_shape::size;
            constexpr std::size_t out_width = output_sizes[I];
            auto& layer = std::get<I>(ws.layers_);
            const ConstMatrix dy_all{dy, rows, out_width};
            const Range inputs = line_share(in_width, member, members);
            if constexpr (splits_inputs_v<layer_t<I>>) {
                // Every member reads all of dy.
                team.sync();
                const Matrix dx = I == 0 ? dx_out : Matrix{dx_buffer, rows, in_width};
                team.run([&] {
                    const auto s = slots<I>(params, grads, state);
                    layer.backward_inputs(s, layer_input<I>(x, ws, 0, rows), dy_all, dx, inputs, ctx);
                    layer.bias_gradient(s, dy_all, line_share(out_width, member, members), ctx);
                });
                return true;
            } else if constexpr (team_by_columns<I>) {
                // In place (dx = dy) past the first layer: another member may still be reading the
                // other buffer as the dy of the layer above.
                const Matrix d = I == 0 ? dx_out : Matrix{dy, rows, out_width};
                team.run([&] {
                    if (inputs.empty() || d.empty()) return;
                    const auto c = [&](auto m) { return m.columns(inputs.begin, inputs.size()); };
                    const ConstMatrix in = reads_input[I] ? c(layer_input<I>(x, ws, 0, rows)) : ConstMatrix{};
                    const ConstMatrix y =
                        reads_output[I] ? c(ConstMatrix{ws.output_rows(I, 0, rows)}) : ConstMatrix{};
                    layer.backward(slots<I>(params, grads, state), in, y, c(dy_all), c(d), ctx);
                });
                return false;
            } else {
                team_row_phase<I>(
                    team, rows, ctx, [&](const StepContext& part, std::size_t first, std::size_t n) {
                        backward_layer<I>(params, grads, state, x, ws, part, dy + first * out_width,
                                          dx_buffer + first * in_width, dx_out, first, n);
                    });
                return true;
            }
        }
    }

    /// Layer I on rows [first, first + n) of the batch.
    template <std::size_t I>
    static void forward_layer(std::span<const float> params, std::span<float> state, ConstMatrix x,
                              Workspace& ws, const StepContext& ctx, std::size_t first, std::size_t n) {
        if constexpr (fused[I]) {
            return; // layer I - 1 already wrote ReLU(its output), or layer I + 1 applies it
        } else {
            const Matrix y = ws.output_rows(I, first, n);
            const ConstMatrix in = layer_input<I>(x, ws, first, n);
            auto& layer = std::get<I>(ws.layers_);
            if constexpr (runs_relu(I))
                layer.forward(slots<I>(params, {}, state), in, y, ctx, FuseRelu{});
            else
                layer.forward(slots<I>(params, {}, state), in, y, ctx);
        }
    }

    /// Layer I's backward on rows [first, first + n): dy holds their output gradient (n rows
    /// from its start), and their input gradient goes to dx_out's rows for layer 0, to
    /// dx_buffer for the others. Returns whether it ran (a fused ReLU does not).
    template <std::size_t I>
    static bool backward_layer(std::span<const float> params, std::span<float> grads, std::span<float> state,
                               ConstMatrix x, Workspace& ws, const StepContext& ctx, const float* dy,
                               float* dx_buffer, Matrix dx_out, std::size_t first, std::size_t n) {
        if constexpr (fused[I]) {
            // The layer that runs this ReLU applies its derivative in its own backward (FuseRelu):
            // layer I - 1, to the gradient with respect to their shared output, which passes
            // through untouched; or layer I + 1, whose input gradient is then already with
            // respect to this ReLU's input.
            return false;
        } else {
            constexpr std::size_t in_width = layer_t<I>::input_shape::size;
            Matrix dx;
            if constexpr (I == 0)
                dx = dx_out.empty() ? dx_out : dx_out.row_block(first, n);
            else
                dx = Matrix{dx_buffer, n, in_width};
            if constexpr (param_counts[I] > 0 && !overwrites_grads_v<layer_t<I>>)
                if (ctx.overwrite_grads && ctx.first_part() && !grads.empty()) { // it can only add: zeros
                    const auto slice = grads.subspan(param_offsets[I], param_counts[I]);
                    std::fill(slice.begin(), slice.end(), 0.0f);
                }
            auto& layer = std::get<I>(ws.layers_);
            const ConstMatrix dy_view{dy, n, output_sizes[I]};
            // What the backward reads was kept whole (block_local says so for the others).
            static_assert(!reads_input[I] || I == 0 || !output_is_block_local(I - 1));
            static_assert(!reads_output[I] || !output_is_block_local(I));
            const ConstMatrix in = reads_input[I] ? layer_input<I>(x, ws, first, n) : ConstMatrix{},
                              y = reads_output[I] ? ConstMatrix{ws.output_rows(I, first, n)} : ConstMatrix{};
            if constexpr (runs_relu(I))
                layer.backward(slots<I>(params, grads, state), in, y, dy_view, dx, ctx, FuseRelu{});
            else
                layer.backward(slots<I>(params, grads, state), in, y, dy_view, dx, ctx);
            return true;
        }
    }
};

} // namespace pardl
