// W-CNN's convolution kernels at batch 64, through the real layer code as Sequential binds it:
//   conv1 = Conv2D<32,3,1,1> on 1x28x28     pool1 = MaxPool2D<2> on 32x28x28
//   conv2 = Conv2D<64,3,1,1> on 32x14x14    pool2 = MaxPool2D<2> on 64x14x14
// Convolution forward and backward report GFLOP/s and % of this machine's single-core FMA peak;
// the memory-bound passes (im2col, col2im, pooling) report bytes read plus written per second.
// The step/ group times every layer of W-CNN forward and backward in turn.
#include "kernel_benchmark.hpp"
#include "workloads.hpp"

#include "pardl/tensor/buffer.hpp"
#include "pardl/tensor/im2col.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

namespace {

using pardl::bench::fill_uniform;
using pardl::bench::report_bytes;
using pardl::bench::report_flops;
using pardl::bench::WCnn;
using std::size_t;

constexpr size_t batch = 64;

// Taken from the workload itself, so the benchmark follows any change to W-CNN.
using Conv1 = WCnn::layer_t<0>;
using Pool1 = WCnn::layer_t<2>;
using Conv2 = WCnn::layer_t<3>;
using Pool2 = WCnn::layer_t<5>;

/// What one worker of a training step holds for a bound layer: the layer with its scratch, its
/// parameters and gradient slice, and a batch of random inputs and output gradients.
template <class Layer>
struct LayerOnBatch {
    static constexpr size_t in_size = Layer::input_shape::size;
    static constexpr size_t out_size = Layer::output_shape::size;

    Layer layer{batch};
    pardl::AlignedBuffer<float> params{Layer::param_count}, grads{Layer::param_count};
    pardl::AlignedBuffer<float> x{batch * in_size}, y{batch * out_size};
    pardl::AlignedBuffer<float> dy{batch * out_size}, dx{batch * in_size};
    // As the trainer runs a step: backward writes the gradient rather than adding to it.
    pardl::StepContext ctx{.global_rows = batch, .overwrite_grads = true};

    LayerOnBatch() {
        pardl::Rng rng(7);
        Layer::initialize(params.span(), {}, rng);
        fill_uniform(x, 1);
        fill_uniform(dy, 2);
    }

    pardl::LayerSlots slots() { return {params.span(), grads.span(), {}}; }

    void forward() { layer.forward(slots(), input(), pardl::Matrix{y.data(), batch, out_size}, ctx); }
    /// The forward Sequential runs when a ReLU follows the layer: the ReLU applied in the layer.
    void forward_fused_relu() {
        layer.forward(slots(), input(), pardl::Matrix{y.data(), batch, out_size}, ctx, pardl::FuseRelu{});
    }

    /// An empty dx skips the input gradient, as Sequential does for its first layer.
    void backward(bool input_gradient) {
        layer.backward(slots(), input(), output(), output_gradient(), input_gradient_or_none(input_gradient),
                       ctx);
    }
    /// The backward Sequential runs when a ReLU follows the layer: its derivative applied in the layer.
    void backward_fused_relu(bool input_gradient) {
        layer.backward(slots(), input(), output(), output_gradient(), input_gradient_or_none(input_gradient),
                       ctx, pardl::FuseRelu{});
    }

    /// The timed loop of every layer benchmark: `pass` (a forward or backward above) per iteration,
    /// with everything a pass writes kept observable.
    template <class Pass>
    void time(benchmark::State& state, Pass&& pass) {
        for (auto _ : state) {
            pass();
            benchmark::DoNotOptimize(y.data());
            benchmark::DoNotOptimize(dx.data());
            benchmark::DoNotOptimize(grads.data());
            benchmark::ClobberMemory();
        }
    }

private:
    pardl::ConstMatrix input() const { return {x.data(), batch, in_size}; }
    pardl::ConstMatrix output() const { return {y.data(), batch, out_size}; }
    pardl::ConstMatrix output_gradient() const { return {dy.data(), batch, out_size}; }
    pardl::Matrix input_gradient_or_none(bool wanted) {
        return wanted ? pardl::Matrix{dx.data(), batch, in_size} : pardl::Matrix{};
    }
};

template <class Conv>
void bm_conv_forward(benchmark::State& state) {
    LayerOnBatch<Conv> b;
    b.time(state, [&] { b.forward(); });
    report_flops(state, 2.0 * Conv::macs * batch);
}

/// The weight gradient is one GEMM of the forward's size, the input gradient another; the bias
/// sums (a 1/(2 C K K) share of the weight gradient's FLOPs) are not counted.
template <class Conv, bool InputGradient>
void bm_conv_backward(benchmark::State& state) {
    LayerOnBatch<Conv> b;
    b.forward(); // the contract: backward follows a forward on the same batch
    b.time(state, [&] { b.backward(InputGradient); });
    report_flops(state, (InputGradient ? 4.0 : 2.0) * Conv::macs * batch);
}

// The unrolling passes alone (im2col, and im2row for a backward that runs channels-last, as
// conv2 of W-CNN does: Conv2D::bind::channels_last) and their adjoints (col2im, row2im), each
// sample in turn into (out of) one sample's column or row matrix, as the layer does: that buffer
// stays in cache while the batch streams through.

using SamplePass = void (*)(const pardl::ConvGeometry&, const float*, float*);

template <class Conv, SamplePass Unroll>
void bm_unroll(benchmark::State& state) {
    constexpr size_t in_size = Conv::input_shape::size, col_size = Conv::patch * Conv::pixels;
    pardl::AlignedBuffer<float> x(batch * in_size), cols(col_size);
    fill_uniform(x, 1);
    for (auto _ : state) {
        for (size_t r = 0; r < batch; ++r) Unroll(Conv::geometry, x.data() + r * in_size, cols.data());
        benchmark::DoNotOptimize(cols.data());
        benchmark::ClobberMemory();
    }
    // Each input read once, each column (row) element written once.
    report_bytes(state, double(batch * (in_size + col_size) * sizeof(float)));
}

/// DxPasses: 2 when the adjoint adds into dx (col2im: read and written), 1 when it overwrites dx
/// (row2im).
template <class Conv, SamplePass Adjoint, size_t DxPasses>
void bm_fold(benchmark::State& state) {
    constexpr size_t in_size = Conv::input_shape::size, col_size = Conv::patch * Conv::pixels;
    pardl::AlignedBuffer<float> cols(col_size), dx(batch * in_size);
    fill_uniform(cols, 2);
    fill_uniform(dx, 3);
    for (auto _ : state) {
        for (size_t r = 0; r < batch; ++r) Adjoint(Conv::geometry, cols.data(), dx.data() + r * in_size);
        benchmark::DoNotOptimize(dx.data());
        benchmark::ClobberMemory();
    }
    report_bytes(state, double(batch * (col_size + DxPasses * in_size) * sizeof(float)));
}

/// Bytes one pooling pass moves per batch, forward or backward alike. Forward reads the input and
/// writes the output and each output's winner (a byte for 2x2 windows: MaxPool2D's Winner);
/// backward reads the output gradient and the winners and writes the whole input gradient (W-CNN's
/// 2x2 windows tile it).
template <class Pool>
constexpr double pool_bytes() {
    constexpr size_t in_size = Pool::input_shape::size, out_size = Pool::output_shape::size;
    return double(batch *
                  (in_size * sizeof(float) + out_size * (sizeof(float) + sizeof(typename Pool::Winner))));
}

template <class Pool>
void bm_pool_forward(benchmark::State& state) {
    LayerOnBatch<Pool> b;
    b.time(state, [&] { b.forward(); });
    report_bytes(state, pool_bytes<Pool>());
}

template <class Pool>
void bm_pool_backward(benchmark::State& state) {
    LayerOnBatch<Pool> b;
    b.forward(); // records the winners backward routes the gradient to
    b.time(state, [&] { b.backward(true); });
    report_bytes(state, pool_bytes<Pool>());
}

/// One layer of the W-CNN step, forward or backward, on its own, as the step runs it (the first
/// layer computes no input gradient). Layers without multiply-adds report 0 GFLOP/s; their time
/// is the point. The sum over layers, set against the step's time in bench_training, shows what
/// the step spends outside the layers and what the layers lose to colder caches inside it.
template <size_t I, bool Backward>
void bm_step_layer(benchmark::State& state) {
    using Layer = WCnn::layer_t<I>;
    // Sequential's fusion: a ReLU that the layer before or after it applies (WCnn::fused) has no
    // passes of its own (it is not registered) and that layer's forward and backward include it.
    constexpr bool fuses_relu = WCnn::runs_relu(I);
    LayerOnBatch<Layer> b;
    const auto forward = [&] {
        if constexpr (fuses_relu)
            b.forward_fused_relu();
        else
            b.forward();
    };
    forward(); // backward reads the (activated) output of a forward on the same batch
    b.time(state, [&] {
        if constexpr (!Backward)
            forward();
        else if constexpr (fuses_relu)
            b.backward_fused_relu(I != 0);
        else
            b.backward(I != 0);
    });
    const double passes = Backward ? (I == 0 ? 1.0 : 2.0) : 1.0;
    report_flops(state, 2.0 * passes * double(WCnn::layer_macs[I]) * batch);
}

void add(const std::string& name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name.c_str(), fn)->Unit(benchmark::kMicrosecond);
}

template <class Conv>
void add_conv(const std::string& label) {
    add(label + "/forward", bm_conv_forward<Conv>);
    // Sequential asks the first layer for no input gradient, so conv1 trains with backward_weights
    // and conv2 with backward_weights_input; both are measured for both layers.
    add(label + "/backward_weights", bm_conv_backward<Conv, false>);
    add(label + "/backward_weights_input", bm_conv_backward<Conv, true>);
}

template <class Conv>
void add_columns(const std::string& label) {
    add(label + "/im2col", bm_unroll<Conv, pardl::im2col>);
    add(label + "/col2im", bm_fold<Conv, pardl::col2im, 2>);
}

template <class Pool>
void add_pool(const std::string& label) {
    add(label + "/forward", bm_pool_forward<Pool>);
    add(label + "/backward", bm_pool_backward<Pool>);
}

/// "step/03_Conv2D<64 3 s1 p1>+ReLU/forward": the layer's index in W-CNN (two digits, so names sort in
/// order).
template <size_t I>
std::string step_label(bool forward) {
    // Commas would split the name across CSV columns: "Conv2D<64,3,s1,p1>" becomes "Conv2D<64 3 s1 p1>".
    std::string name = WCnn::layer_t<I>::name();
    std::replace(name.begin(), name.end(), ',', ' ');
    return "step/" + std::string(I < 10 ? "0" : "") + std::to_string(I) + "_" + name +
           (WCnn::runs_relu(I) ? "+ReLU" : "") + (forward ? "/forward" : "/backward");
}

template <size_t... I>
void add_step_layers(std::index_sequence<I...>) {
    ((WCnn::fused[I] ? void() : add(step_label<I>(true), bm_step_layer<I, false>)), ...);
    ((WCnn::fused[I] ? void() : add(step_label<I>(false), bm_step_layer<I, true>)), ...);
}

void register_all() {
    // The convolutions first, whatever the filter: Google Benchmark's CSV output takes its counter
    // columns from the first benchmark that runs and aborts on a counter added later.
    add_conv<Conv1>("conv1");
    add_conv<Conv2>("conv2");
    add_columns<Conv1>("conv1");
    add_columns<Conv2>("conv2");
    add("conv2/im2row", bm_unroll<Conv2, pardl::im2row>);
    add("conv2/row2im", bm_fold<Conv2, pardl::row2im, 1>);
    add_pool<Pool1>("pool1");
    add_pool<Pool2>("pool2");
    add_step_layers(std::make_index_sequence<WCnn::layer_count>{});
}

} // namespace

int main(int argc, char** argv) {
    return pardl::bench::kernel_benchmark_main(argc, argv, register_all);
}
