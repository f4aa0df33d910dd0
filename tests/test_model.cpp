// Sequential models: compile-time parameter counts and the reverse-order flat layout, describe(),
// seeded initialisation, forward values against hand computation, end-to-end gradient checks, and
// the checkpoint format (round trip, and every kind of bad file rejected with its own message).
#include "pardl/core/errors.hpp"
#include "pardl/layers/conv2d.hpp"
#include "pardl/layers/dense.hpp"
#include "pardl/layers/flatten.hpp"
#include "pardl/layers/max_pool2d.hpp"
#include "pardl/layers/relu.hpp"
#include "pardl/layers/sigmoid.hpp"
#include "pardl/layers/tanh.hpp"
#include "pardl/losses/mse.hpp"
#include "pardl/losses/softmax_cross_entropy.hpp"
#include "pardl/model/describe.hpp"
#include "pardl/model/sequential.hpp"
#include "pardl/testing/gradcheck.hpp"
#include "pardl/train/checkpoint.hpp"

#include "checkpoint_layout.hpp"

#include <catch2/catch.hpp>
#include <zlib.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace {

using std::size_t;
using namespace pardl;
namespace fs = std::filesystem;
namespace pt = pardl::testing;

using WMlp = Sequential<Input<784>, Dense<256>, ReLU, Dense<128>, ReLU, Dense<10>>;
using WCnn = Sequential<Input<1, 28, 28>, Conv2D<32, 3, 1, 1>, ReLU, MaxPool2D<2>, Conv2D<64, 3, 1, 1>, ReLU,
                        MaxPool2D<2>, Flatten, Dense<256>, ReLU, Dense<10>>;

} // namespace

// ---------------------------------------------------------------------------------------------
// Compile-time structure

TEST_CASE("Sequential: parameter counts of the W-MLP", "[model][layout]") {
    // 784*256 + 256 = 200960; 256*128 + 128 = 32896; 128*10 + 10 = 1290.
    STATIC_REQUIRE(WMlp::learnable_param_count == 235146);
    // The buffer adds 6 floats of padding, after Dense<10>'s 1290, so that Dense<128> starts on a
    // cache line (and Dense<256> then does too: 1296 + 32896 = 16 * 2137).
    STATIC_REQUIRE(WMlp::param_count == 235152);
    STATIC_REQUIRE(WMlp::layer_count == 5);
    STATIC_REQUIRE(WMlp::param_counts == std::array<size_t, 5>{200960, 0, 32896, 0, 1290});
    STATIC_REQUIRE(WMlp::state_count == 0);
    STATIC_REQUIRE(std::is_same_v<WMlp::input_shape, Shape<784>>);
    STATIC_REQUIRE(std::is_same_v<WMlp::output_shape, Shape<10>>);
    STATIC_REQUIRE(WMlp::output_sizes == std::array<size_t, 5>{256, 256, 128, 128, 10});
    STATIC_REQUIRE(WMlp::gradient_width == 784); // no row-wise prefix: the input's gradient is the widest
}

TEST_CASE("Sequential: parameter blocks are laid out in reverse layer order", "[model][layout]") {
    // Last layer first: Dense<10> at 0, then Dense<128> at 1296 (1290 rounded up to a cache
    // line), Dense<256> at 1296 + 32896. A layer without parameters sits where the previous ended.
    STATIC_REQUIRE(WMlp::param_alignment == 16);
    STATIC_REQUIRE(WMlp::param_offsets[4] == 0);
    STATIC_REQUIRE(WMlp::param_offsets[3] == 1290);
    STATIC_REQUIRE(WMlp::param_offsets[2] == 1296);
    STATIC_REQUIRE(WMlp::param_offsets[1] == 34192);
    STATIC_REQUIRE(WMlp::param_offsets[0] == 34192);
    STATIC_REQUIRE(WMlp::param_offsets[0] + WMlp::param_counts[0] == WMlp::param_count);
}

/// Checks Model's layout: every non-empty block starts on a param_alignment boundary, after the
/// end of the block of the layer behind it (the one nearer the buffer's start) by less than one
/// alignment unit, and the buffer ends with the first layer's block.
template <class Model>
void check_aligned_layout() {
    constexpr size_t align = Model::param_alignment;
    size_t end = 0; // end of the blocks so far, walking the buffer from its start
    size_t learnable = 0;
    for (size_t i = Model::layer_count; i-- > 0;) {
        INFO("layer " << i);
        const size_t off = Model::param_offsets[i], n = Model::param_counts[i];
        CHECK(off >= end);
        if (n != 0) {
            CHECK(off % align == 0);
            CHECK(off - end < align);
        }
        end = off + n;
        learnable += n;
    }
    CHECK(end == Model::param_count);
    CHECK(learnable == Model::learnable_param_count);
}

TEST_CASE("Sequential: every parameter block starts on a cache line, with less than one of padding",
          "[model][layout]") {
    check_aligned_layout<WMlp>();
    // W-CNN: Dense<10>'s 2570 floats are followed by 6 of padding; then Dense<256>'s 803072 and
    // the convolutions' 18496 and 320 each end on a cache line.
    check_aligned_layout<WCnn>();
    STATIC_REQUIRE(WCnn::param_offsets[7] == 2576);
    STATIC_REQUIRE(WCnn::param_offsets[3] == 2576 + 803072);
    STATIC_REQUIRE(WCnn::param_offsets[0] == 2576 + 803072 + 18496);
    STATIC_REQUIRE(WCnn::learnable_param_count == 824458);
    STATIC_REQUIRE(WCnn::param_count == 824464);
    // A model whose only block starts at 0 has no padding at all.
    using One = Sequential<Input<4>, Dense<3>, ReLU>;
    check_aligned_layout<One>();
    STATIC_REQUIRE(One::param_count == One::learnable_param_count);
}

TEST_CASE("initialize zeroes the padding between parameter blocks", "[model][layout][init]") {
    std::vector<float> params(WMlp::param_count, 1.0f);
    WMlp::initialize(params, {}, 3);
    for (size_t k = 1290; k < 1296; ++k) CHECK(params[k] == 0.0f);
    size_t blocks = 0, covered = 0;
    WMlp::for_each_param_block([&](size_t first, size_t count) {
        CHECK(first >= covered); // buffer order
        covered = first + count;
        ++blocks;
    });
    CHECK(blocks == 3);
    CHECK(covered == WMlp::param_count);
}

TEST_CASE("Sequential: shapes through Flatten and layer_t", "[model][layout]") {
    using M = Sequential<Input<2, 3, 4>, Flatten, Dense<5>, Tanh>;
    STATIC_REQUIRE(std::is_same_v<M::layer_t<0>::output_shape, Shape<24>>);
    STATIC_REQUIRE(std::is_same_v<M::layer_t<1>::input_shape, Shape<24>>);
    STATIC_REQUIRE(std::is_same_v<M::output_shape, Shape<5>>);
    STATIC_REQUIRE(M::param_count == 24 * 5 + 5);
    CHECK(M::output_shapes() == std::array<std::string, 3>{"24", "5", "5"});
    CHECK(M::layer_names() == std::array<std::string, 3>{"Flatten", "Dense<5>", "Tanh"});
    CHECK(M::signature() == "2x3x4-Flatten-Dense<5>-Tanh");
    CHECK(WMlp::signature() == "784-Dense<256>-ReLU-Dense<128>-ReLU-Dense<10>");
}

TEST_CASE("describe() lists every layer, its output and parameters, and the total", "[model][describe]") {
    const std::string d = describe<WMlp>();
    INFO(d);
    for (const char* s : {"Input", "784", "Dense<256>", "ReLU", "Dense<128>", "Dense<10>", "total", "235146",
                          "200960", "32896", "1290"})
        CHECK(d.find(s) != std::string::npos);
    // One header, one input line, one line per layer, one total line.
    CHECK(std::count(d.begin(), d.end(), '\n') == 1 + 1 + 5 + 1);
    // The Dense<128> line carries its own count and output.
    std::istringstream lines(d);
    std::string line;
    bool found = false;
    while (std::getline(lines, line)) {
        if (line.find("Dense<128>") == std::string::npos) continue;
        found = true;
        std::istringstream fields(line);
        std::string idx, name, out, params;
        fields >> idx >> name >> out >> params;
        CHECK(idx == "2");
        CHECK(out == "128");
        CHECK(params == "32896");
    }
    CHECK(found);
    // Where each output lives: W-MLP has no row-wise layers and no fused ReLU (each ReLU's backward
    // reads its output, the next Dense's its input), so every output is kept whole:
    // (256 + 256 + 128 + 128 + 10) floats, 3112 bytes a sample.
    CHECK(d.find("fused") == std::string::npos);
    CHECK(d.find("block") == std::string::npos);
    CHECK(d.find(" 3.1 KB a sample") != std::string::npos);
}

TEST_CASE("describe() shows W-CNN's convolution outputs living block by block", "[model][describe]") {
    const std::string d = describe<WCnn>();
    INFO(d);
    std::istringstream lines(d);
    std::string line;
    std::vector<std::string> where;
    while (std::getline(lines, line))
        if (!line.empty() && std::isdigit(static_cast<unsigned char>(line[0])))
            where.push_back(line.substr(line.rfind("  ") + 2));
    CHECK(where == std::vector<std::string>{"block", "fused in #2", "batch", "block", "fused in #5", "batch",
                                            "batch", "batch", "batch", "batch"});
    // Kept whole: the poolings' 6272 and 3136 floats, Flatten's 3136, Dense<256>'s and its ReLU's
    // 256 each, Dense<10>'s 10: 52,264 bytes a sample (203 KB with the convolutions' outputs).
    CHECK(d.find(" 52.3 KB a sample") != std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Initialisation

TEST_CASE("initialize is deterministic in the seed and differs across seeds", "[model][init]") {
    std::vector<float> a(WMlp::param_count), b(WMlp::param_count), c(WMlp::param_count);
    WMlp::initialize(a, {}, 42);
    WMlp::initialize(b, {}, 42);
    WMlp::initialize(c, {}, 43);
    CHECK(a == b);
    size_t same = 0;
    for (size_t i = 0; i < a.size(); ++i) same += a[i] == c[i];
    // Only the zero biases (256 + 128 + 10) and the zero padding may coincide.
    CHECK(same == 256 + 128 + 10 + WMlp::param_count - WMlp::learnable_param_count);
    // Biases zero, weights not.
    for (size_t k = WMlp::param_offsets[4] + 1280; k < WMlp::param_offsets[4] + 1290; ++k)
        CHECK(a[k] == 0.0f);
    // He normal scale of the first layer: sd sqrt(2 / 784).
    double s2 = 0;
    const size_t off = WMlp::param_offsets[0];
    for (size_t k = 0; k < 784 * 256; ++k) s2 += double(a[off + k]) * a[off + k];
    CHECK(std::sqrt(s2 / (784 * 256)) == Approx(std::sqrt(2.0 / 784)).epsilon(0.02));
}

TEST_CASE("initialize: each layer draws from its own stream, so appending layers keeps the others",
          "[model][init]") {
    using Small = Sequential<Input<4>, Dense<3>>;
    using Longer = Sequential<Input<4>, Dense<3>, ReLU, Dense<2>>;
    std::vector<float> s(Small::param_count), l(Longer::param_count);
    Small::initialize(s, {}, 7);
    Longer::initialize(l, {}, 7);
    for (size_t k = 0; k < Small::param_count; ++k) CHECK(s[k] == l[Longer::param_offsets[0] + k]);
}

// ---------------------------------------------------------------------------------------------
// Forward values

TEST_CASE("forward of a one-layer Dense model equals x W + b", "[model][forward]") {
    using M = Sequential<Input<3>, Dense<2>>;
    // W = [[1, -1], [0.5, 2], [-2, 0]], b = [0.25, -0.5].
    const std::vector<float> params = {1, -1, 0.5f, 2, -2, 0, 0.25f, -0.5f};
    const float x[] = {1, 2, 3, /**/ -1, 0, 0.5f};
    M::Workspace ws(4);
    const ConstMatrix y = M::forward(params, {}, ConstMatrix{x, 2, 3}, ws, StepContext{});
    REQUIRE(y.rows == 2);
    REQUIRE(y.cols == 2);
    // Row 0: [1 + 1 - 6, -1 + 4 + 0] + b = [-3.75, 2.5]; row 1: [-1 - 1, 1 + 0] + b = [-1.75, 0.5].
    CHECK(y(0, 0) == -3.75f);
    CHECK(y(0, 1) == 2.5f);
    CHECK(y(1, 0) == -1.75f);
    CHECK(y(1, 1) == 0.5f);
}

TEST_CASE("forward of a two-layer model uses the reverse-order parameter blocks", "[model][forward]") {
    using M = Sequential<Input<2>, Dense<2>, ReLU, Dense<1>>;
    STATIC_REQUIRE(M::param_offsets[2] == 0);  // Dense<1>: 2 weights + 1 bias at [0, 3)
    STATIC_REQUIRE(M::param_offsets[0] == 16); // Dense<2>: 4 weights + 2 biases at [16, 22)
    STATIC_REQUIRE(M::param_count == 22);
    // Dense<1>: w = [2, -1], b = 0.5. Dense<2>: W = [[1, -1], [1, 1]], b = [0, -3].
    std::vector<float> params(M::param_count, 0.0f);
    const float dense1[] = {2, -1, 0.5f}, dense2[] = {1, -1, 1, 1, 0, -3};
    std::copy(std::begin(dense1), std::end(dense1), params.begin());
    std::copy(std::begin(dense2), std::end(dense2), params.begin() + 16);
    const float x[] = {1, 2, /**/ 3, -1};
    M::Workspace ws(2);
    const ConstMatrix y = M::forward(params, {}, ConstMatrix{x, 2, 2}, ws, StepContext{});
    // Row 0: h = relu([1 + 2, -1 + 2 - 3]) = [3, 0]; y = 6 + 0.5 = 6.5.
    // Row 1: h = relu([3 - 1, -3 - 1 - 3]) = [2, 0]; y = 4 + 0.5 = 4.5.
    CHECK(y(0, 0) == 6.5f);
    CHECK(y(1, 0) == 4.5f);
    // Intermediate outputs are kept in the workspace.
    CHECK(ws.output(0)(1, 1) == -7.0f);
    CHECK(ws.output(1)(1, 1) == 0.0f);

    // Backward through the same model with dL/dy = 1 per row: dw2 = sum h = [5, 0], db2 = 2;
    // dh = w2 * relu' = [2, 0] per row; dW1 = x^T dh = [[2 + 6, 0], [4 - 2, 0]], db1 = [4, 0].
    std::vector<float> grads(M::param_count, 0.0f);
    Matrix dy = ws.output_gradient();
    dy(0, 0) = 1;
    dy(1, 0) = 1;
    float dx[4];
    M::backward(params, grads, {}, ConstMatrix{x, 2, 2}, ws, StepContext{}, Matrix{dx, 2, 2});
    std::vector<float> expect(M::param_count, 0.0f); // the padding's gradient stays zero
    const float d_dense1[] = {5, 0, 2}, d_dense2[] = {8, 0, 2, 0, 4, 0};
    std::copy(std::begin(d_dense1), std::end(d_dense1), expect.begin());
    std::copy(std::begin(d_dense2), std::end(d_dense2), expect.begin() + 16);
    for (size_t k = 0; k < expect.size(); ++k) CHECK(grads[k] == Approx(expect[k]).margin(1e-6));
    // dx = dh W1^T: [2 * 1 + 0 * -1, 2 * 1 + 0 * 1] = [2, 2] for both rows.
    for (float v : dx) CHECK(v == Approx(2.0f).margin(1e-6));
}

namespace {
/// A parameter layer that only knows how to add its gradient (no overwrites_grads): y = x + b.
struct AddBias : LayerSpecBase {
    template <ShapeType In>
    static constexpr bool accepts = true;
    static std::string name() { return "AddBias"; }
    template <ShapeType In>
    struct bind {
        using input_shape = In;
        using output_shape = In;
        static constexpr std::size_t param_count = In::size;
        static constexpr std::size_t state_count = 0;
        static std::string name() { return "AddBias"; }
        explicit bind(std::size_t) {}
        static void initialize(std::span<float> p, std::span<float>, Rng&) {
            std::fill(p.begin(), p.end(), 0.5f);
        }
        void forward(const LayerSlots& s, ConstMatrix x, Matrix y, const StepContext&) {
            for (std::size_t r = 0; r < x.rows; ++r)
                for (std::size_t j = 0; j < In::size; ++j) y(r, j) = x(r, j) + s.params[j];
        }
        void backward(const LayerSlots& s, ConstMatrix, ConstMatrix, ConstMatrix dy, Matrix dx,
                      const StepContext&) {
            for (std::size_t r = 0; r < dy.rows; ++r)
                for (std::size_t j = 0; j < In::size; ++j) {
                    s.grads[j] += dy(r, j);
                    if (!dx.empty()) dx(r, j) = dy(r, j);
                }
        }
    };
};
} // namespace

TEST_CASE("backward with overwrite_grads writes every gradient over stale values", "[model][backward]") {
    // Dense and Conv2D overwrite their slices themselves; Sequential clears AddBias's, which can
    // only add, and the padding between blocks. Either way the result equals adding into zeros,
    // bit for bit.
    using M = Sequential<Input<1, 4, 4>, Conv2D<2, 3, 1, 1>, AddBias, Flatten, Dense<3>, AddBias>;
    std::vector<float> params(M::param_count);
    M::initialize(params, {}, 3);
    std::vector<float> x(2 * 16);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.1f * static_cast<float>(i % 7) - 0.3f;
    M::Workspace ws(2);
    auto gradients = [&](bool overwrite, float stale) {
        std::vector<float> grads(M::param_count, stale);
        M::forward(params, {}, ConstMatrix{x.data(), 2, 16}, ws, StepContext{});
        Matrix dy = ws.output_gradient();
        for (std::size_t r = 0; r < 2; ++r)
            for (std::size_t j = 0; j < 3; ++j) dy(r, j) = 0.25f * static_cast<float>(r + j) - 0.4f;
        StepContext ctx;
        ctx.overwrite_grads = overwrite;
        M::backward(params, grads, {}, ConstMatrix{x.data(), 2, 16}, ws, ctx);
        return grads;
    };
    const std::vector<float> added = gradients(false, 0.0f);
    const std::vector<float> written = gradients(true, std::numeric_limits<float>::quiet_NaN());
    for (std::size_t k = 0; k < added.size(); ++k) CHECK(written[k] == added[k]);
    // Without the flag, backward adds: stale ones stay in the sum.
    const std::vector<float> plus_one = gradients(false, 1.0f);
    for (std::size_t k = 0; k < added.size(); ++k) CHECK(plus_one[k] == Approx(added[k] + 1.0f).margin(1e-6));
}

// ---------------------------------------------------------------------------------------------
// End-to-end gradient checks

namespace {
template <class Model, class Loss>
void require_model_gradcheck(size_t rows, pt::GradcheckOptions o = {}) {
    const auto report = pt::check_model<Model, Loss>(rows, o);
    INFO(Model::signature() << " with " << Loss::name() << ": " << report.summary());
    REQUIRE(report.checked > 0);
    REQUIRE(report.ok);
}
} // namespace

TEST_CASE("check_model: MLPs with each loss and activation", "[model][gradcheck]") {
    // Hidden ReLU inputs are not kept off the kink the way the model input is: with the default
    // step 1e-2 a pre-activation of 0.0019 (row 1, unit 6 for seed 7) straddles 0 and the central
    // difference is meaningless there. A step of 1e-3 stays on one side and is still far above
    // float rounding for these sizes.
    pt::GradcheckOptions relu;
    relu.step = 1e-3;
    require_model_gradcheck<Sequential<Input<6>, Dense<8>, ReLU, Dense<4>>, SoftmaxCrossEntropy>(5, relu);
    require_model_gradcheck<Sequential<Input<2, 3, 2>, Flatten, Dense<7>, ReLU, Dense<5>, ReLU, Dense<3>>,
                            SoftmaxCrossEntropy>(4, relu);
    require_model_gradcheck<Sequential<Input<5>, Dense<6>, Tanh, Dense<3>>, MSE>(4);
    require_model_gradcheck<Sequential<Input<2, 2, 2>, Flatten, Dense<5, XavierUniform>, Sigmoid, Dense<3>>,
                            SoftmaxCrossEntropy>(3);
    require_model_gradcheck<Sequential<Input<7>, Dense<9, XavierUniform>, Tanh, Dense<5>, Sigmoid, Dense<2>>,
                            MSE>(6);
    require_model_gradcheck<Sequential<Input<3>, Dense<1>>, MSE>(2);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

namespace {

/// A fresh directory under the system temp dir, removed afterwards.
struct TempDir {
    fs::path path;
    TempDir() {
        static int counter = 0;
        path = fs::temp_directory_path() /
               ("pardl_test_model_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    size_t entries() const {
        return static_cast<size_t>(std::distance(fs::directory_iterator(path), fs::directory_iterator()));
    }
};

using checkpoint_layout::header_size;
using checkpoint_layout::progress_size;
using checkpoint_layout::read_bytes;
using checkpoint_layout::settings_size;
using checkpoint_layout::write_bytes;

std::vector<float> sample_values(size_t n, std::uint64_t seed) {
    std::vector<float> v(n);
    Rng rng(seed);
    for (float& x : v) x = rng.normal();
    return v;
}

/// The CheckpointError message of loading `path`, or "" if it loaded.
std::string load_error(const fs::path& path, const std::string& sig, std::span<float> p, std::span<float> s) {
    try {
        load_checkpoint(path, sig, p, s);
    } catch (const CheckpointError& e) {
        return e.what();
    }
    return "";
}

using Small = Sequential<Input<5>, Dense<4>, ReLU, Dense<3>>;

} // namespace

TEST_CASE("checkpoint: save then load restores parameters and state bit for bit", "[model][checkpoint]") {
    TempDir dir;
    const fs::path file = dir.path / "model.ckpt";
    std::vector<float> params(Small::param_count);
    Small::initialize(params, {}, 11);
    // Include values that a text round trip or a float conversion would not preserve.
    params[0] = -0.0f;
    params[1] = std::numeric_limits<float>::denorm_min();
    params[2] = std::numeric_limits<float>::infinity();
    params[3] = std::numeric_limits<float>::quiet_NaN();
    params[4] = 1.0f / 3.0f;
    std::vector<float> state = sample_values(6, 5);
    save_checkpoint(file, Small::signature(), params, state);
    // Without a training progress: the model alone, in format version 1.
    CHECK(fs::file_size(file) == header_size(Small::signature()) + 4 * (params.size() + state.size()));
    CHECK(read_bytes(file)[8] == 1);

    std::vector<float> p2(Small::param_count, 123.0f), s2(6, 123.0f);
    load_checkpoint(file, Small::signature(), p2, s2);
    CHECK(std::memcmp(p2.data(), params.data(), params.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(s2.data(), state.data(), state.size() * sizeof(float)) == 0);

    // Saving again replaces the file; the old contents are gone.
    std::vector<float> params3 = sample_values(Small::param_count, 99);
    save_checkpoint(file, Small::signature(), params3, state);
    load_checkpoint(file, Small::signature(), p2, s2);
    CHECK(p2 == params3);

    // Also with an empty state and a large buffer.
    const fs::path big = dir.path / "big.ckpt";
    std::vector<float> wp = sample_values(WMlp::param_count, 3), wp2(WMlp::param_count);
    save_checkpoint(big, WMlp::signature(), wp, {});
    load_checkpoint(big, WMlp::signature(), wp2, {});
    CHECK(wp == wp2);
}

TEST_CASE("checkpoint: save leaves no temporary file behind", "[model][checkpoint]") {
    TempDir dir;
    std::vector<float> params = sample_values(Small::param_count, 1);
    save_checkpoint(dir.path / "a.ckpt", Small::signature(), params, {});
    save_checkpoint(dir.path / "a.ckpt", Small::signature(), params, {});
    save_checkpoint(dir.path / "b.ckpt", Small::signature(), params, {});
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir.path)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"a.ckpt", "b.ckpt"});
}

TEST_CASE("checkpoint: the next save removes what a killed write left, and only that",
          "[model][checkpoint]") {
    TempDir dir;
    const fs::path target = dir.path / "a.ckpt";
    std::vector<float> params = sample_values(Small::param_count, 1);
    const auto names = [&] {
        std::vector<std::string> found;
        for (const auto& e : fs::directory_iterator(dir.path)) found.push_back(e.path().filename().string());
        std::sort(found.begin(), found.end());
        return found;
    };
    // A child process killed in the middle of writing `target`: its temporary file stays.
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        try {
            pardl::write_file_atomically<pardl::CheckpointError>(target, "checkpoint", [](auto put) {
                put("partial", 7);
                ::raise(SIGKILL);
            });
        } catch (...) {
        }
        ::_exit(3); // reached only if the write failed before its kill: the test then fails below
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFSIGNALED(status));
    std::vector<std::string> left = names();
    REQUIRE(left.size() == 1);
    const std::string abandoned = left[0];
    CHECK(abandoned.rfind("a.ckpt.pardl-tmp-", 0) == 0);
    // A write still running (its lock held, here by this test), look-alike names (a user's own
    // "a.ckpt.tmp-" file among them), and another file's leftover: none is this write's to remove.
    const fs::path live = dir.path / "a.ckpt.pardl-tmp-LIVE01";
    std::ofstream(live) << "live";
    const int live_fd = ::open(live.c_str(), O_RDONLY);
    REQUIRE(live_fd >= 0);
    REQUIRE(::flock(live_fd, LOCK_EX | LOCK_NB) == 0);
    for (const char* other : {"a.ckpt.pardl-tmp-12345", "a.ckpt.pardl-tmp-1234567", "b.ckpt.pardl-tmp-abcdef",
                              "a.ckpt.old", "a.ckpt.tmp-backup"})
        std::ofstream(dir.path / other) << "other";
    save_checkpoint(target, Small::signature(), params, {});
    CHECK(names() == std::vector<std::string>{"a.ckpt", "a.ckpt.old", "a.ckpt.pardl-tmp-12345",
                                              "a.ckpt.pardl-tmp-1234567", "a.ckpt.pardl-tmp-LIVE01",
                                              "a.ckpt.tmp-backup", "b.ckpt.pardl-tmp-abcdef"});
    // Once that write's process is gone (its lock with it), the next save removes its file too.
    ::close(live_fd);
    save_checkpoint(target, Small::signature(), params, {});
    CHECK(names() == std::vector<std::string>{"a.ckpt", "a.ckpt.old", "a.ckpt.pardl-tmp-12345",
                                              "a.ckpt.pardl-tmp-1234567", "a.ckpt.tmp-backup",
                                              "b.ckpt.pardl-tmp-abcdef"});
    std::vector<float> back(Small::param_count);
    load_checkpoint(target, Small::signature(), back, {});
    CHECK(back == params);
}

TEST_CASE("checkpoint: loading into another model names both signatures", "[model][checkpoint]") {
    TempDir dir;
    using Other = Sequential<Input<5>, Dense<4>, Tanh, Dense<3>>; // same sizes, other architecture
    STATIC_REQUIRE(Other::param_count == Small::param_count);
    std::vector<float> params = sample_values(Small::param_count, 2), into(Other::param_count, 0.0f);
    save_checkpoint(dir.path / "m.ckpt", Small::signature(), params, {});
    const std::string msg = load_error(dir.path / "m.ckpt", Other::signature(), into, {});
    INFO(msg);
    CHECK(msg.find(Small::signature()) != std::string::npos);
    CHECK(msg.find(Other::signature()) != std::string::npos);
    // Nothing was loaded.
    CHECK(std::all_of(into.begin(), into.end(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("checkpoint: corrupt files are rejected with specific messages", "[model][checkpoint]") {
    TempDir dir;
    const fs::path file = dir.path / "c.ckpt";
    const std::string sig = Small::signature();
    std::vector<float> params = sample_values(Small::param_count, 4), state = sample_values(3, 5);
    TrainingProgress progress;
    progress.step = 5;
    progress.epochs = 1;
    progress.optimizer = "sgd";
    progress.learning_rate = 0.1f;
    progress.optimizer_steps = 5;
    progress.optimizer_state = sample_values(Small::param_count, 6);
    save_checkpoint(file, sig, params, state, &progress);
    const std::vector<char> good = read_bytes(file);
    std::vector<float> p(Small::param_count), s(3);
    REQUIRE(load_error(file, sig, p, s).empty());

    SECTION("missing file") {
        const std::string msg = load_error(dir.path / "nope.ckpt", sig, p, s);
        CHECK_THAT(msg, Catch::Contains("cannot open"));
    }
    SECTION("truncated inside the header") {
        write_bytes(file, std::vector<char>(good.begin(), good.begin() + 10));
        const std::string msg = load_error(file, sig, p, s);
        CHECK_THAT(msg, Catch::Contains("truncated") && Catch::Contains("header"));
    }
    SECTION("truncated inside the parameters") {
        write_bytes(file, std::vector<char>(good.begin(), good.begin() + header_size(sig) + 8));
        const std::string msg = load_error(file, sig, p, s);
        CHECK_THAT(msg, Catch::Contains("truncated") && Catch::Contains("parameters"));
    }
    SECTION("truncated by one byte") {
        write_bytes(file, std::vector<char>(good.begin(), good.end() - 1));
        const std::string msg = load_error(file, sig, p, s);
        CHECK_THAT(msg, Catch::Contains("truncated"));
    }
    SECTION("empty file") {
        write_bytes(file, {});
        CHECK_THAT(load_error(file, sig, p, s), Catch::Contains("truncated"));
    }
    SECTION("one flipped bit in the data fails the checksum") {
        const size_t progress_at = header_size(sig) + 4 * (params.size() + state.size());
        for (size_t at :
             {header_size(sig), header_size(sig) + 17, progress_at, progress_at + 9, good.size() - 20}) {
            std::vector<char> bad = good;
            bad[at] = static_cast<char>(bad[at] ^ 0x04);
            write_bytes(file, bad);
            const std::string msg = load_error(file, sig, p, s);
            INFO("byte " << at);
            CHECK_THAT(msg, Catch::Contains("checksum"));
        }
    }
    SECTION("bad magic") {
        std::vector<char> bad = good;
        bad[0] = 'X';
        write_bytes(file, bad);
        CHECK_THAT(load_error(file, sig, p, s),
                   Catch::Contains("not a pardl checkpoint") && Catch::Contains("magic"));
    }
    SECTION("another format version") {
        std::vector<char> bad = good;
        const std::uint32_t v = 7;
        std::memcpy(bad.data() + 8, &v, 4);
        write_bytes(file, bad);
        const std::string msg = load_error(file, sig, p, s);
        CHECK_THAT(msg, Catch::Contains("version 7") && Catch::Contains("versions 1 to 3"));
    }
    SECTION("trailing bytes") {
        std::vector<char> bad = good;
        bad.push_back(0);
        write_bytes(file, bad);
        CHECK_THAT(load_error(file, sig, p, s), Catch::Contains("trailing"));
    }
    SECTION("buffer sizes that do not match the file") {
        std::vector<float> fewer(Small::param_count - 1);
        const std::string msg = load_error(file, sig, fewer, s);
        CHECK_THAT(msg, Catch::Contains(std::to_string(Small::param_count)) &&
                            Catch::Contains(std::to_string(Small::param_count - 1)));
        std::vector<float> no_state;
        CHECK_THAT(load_error(file, sig, p, no_state), Catch::Contains("state"));
    }
    SECTION("a corrupt signature length") {
        std::vector<char> bad = good;
        const std::uint32_t len = 0xFFFFFFF0u;
        std::memcpy(bad.data() + 12, &len, 4);
        write_bytes(file, bad);
        CHECK_THAT(load_error(file, sig, p, s), Catch::Contains("corrupt"));
    }
}

TEST_CASE("checkpoint: the training progress round-trips, and a corrupt optimizer size is refused",
          "[model][checkpoint]") {
    TempDir dir;
    const fs::path file = dir.path / "p.ckpt";
    const std::string sig = Small::signature();
    const std::vector<float> params = sample_values(Small::param_count, 8);
    TrainingProgress saved{.step = 1234567890123ULL,
                           .epochs = 7,
                           .optimizer = "adam",
                           .learning_rate = 3e-4f,
                           .optimizer_steps = 99,
                           .optimizer_state = sample_values(2 * Small::param_count, 9),
                           .settings = {{"batch", "64"}, {"beta1", "0.9"}, {"empty", ""}}};
    save_checkpoint(file, sig, params, {}, &saved);
    CHECK(fs::file_size(file) == header_size(sig) + 4 * params.size() + progress_size(saved));
    std::vector<float> p(Small::param_count);
    TrainingProgress read;
    load_checkpoint(file, sig, p, {}, &read);
    CHECK(p == params);
    CHECK(read.present);
    CHECK(read.step == saved.step);
    CHECK(read.epochs == saved.epochs);
    CHECK(read.optimizer == "adam");
    CHECK(read.learning_rate == saved.learning_rate);
    CHECK(read.optimizer_steps == 99);
    CHECK(read.optimizer_state == saved.optimizer_state);
    CHECK(read.settings == saved.settings);

    // An optimizer state count far beyond any optimizer's is corrupt, not an allocation.
    std::vector<char> bad = read_bytes(file);
    const size_t count_at = header_size(sig) + 4 * params.size() + 8 + 8 + 4 + 4 + 4 + 8;
    const std::uint64_t huge = 1ULL << 60;
    std::memcpy(bad.data() + count_at, &huge, 8);
    write_bytes(file, bad);
    CHECK_THAT(load_error(file, sig, p, {}),
               Catch::Contains("corrupt") && Catch::Contains("optimizer state"));
    // A count within the cap that the file cannot hold: truncated, found before any allocation.
    const std::uint64_t more = 2 * Small::param_count + 64; // past the settings after the state too
    save_checkpoint(file, sig, params, {}, &saved);
    bad = read_bytes(file);
    std::memcpy(bad.data() + count_at, &more, 8);
    write_bytes(file, bad);
    CHECK_THAT(load_error(file, sig, p, {}),
               Catch::Contains("truncated") && Catch::Contains("optimizer state"));

    // Values no run writes, under a valid checksum: refused by name.
    TrainingProgress odd = saved;
    odd.learning_rate = std::numeric_limits<float>::quiet_NaN();
    save_checkpoint(file, sig, params, {}, &odd);
    CHECK_THAT(load_error(file, sig, p, {}), Catch::Contains("learning rate"));
    odd.learning_rate = -0.5f;
    save_checkpoint(file, sig, params, {}, &odd);
    CHECK_THAT(load_error(file, sig, p, {}), Catch::Contains("learning rate -0.5"));
    odd.learning_rate = 0.0f; // where a schedule ended: a rate a run writes
    save_checkpoint(file, sig, params, {}, &odd);
    CHECK(load_error(file, sig, p, {}).empty());
    odd = saved;
    odd.optimizer_steps = 1ULL << 62;
    save_checkpoint(file, sig, params, {}, &odd);
    CHECK_THAT(load_error(file, sig, p, {}), Catch::Contains("corrupt") && Catch::Contains("optimizer step"));
    // An optimizer name the format cannot hold is refused on the way out, and nothing is written.
    odd = saved;
    odd.optimizer = std::string(300, 'x');
    const fs::path other = dir.path / "long.ckpt";
    CHECK_THROWS_WITH(save_checkpoint(other, sig, params, {}, &odd), Catch::Contains("at most 255"));
    CHECK_FALSE(fs::exists(other));
    // So are settings it cannot hold: a name or value of 256 bytes or more, more than 64 of them.
    odd = saved;
    odd.settings.emplace_back("long", std::string(256, 'v'));
    CHECK_THROWS_WITH(save_checkpoint(other, sig, params, {}, &odd),
                      Catch::Contains("setting long") && Catch::Contains("at most 255 bytes of printable"));
    odd.settings.assign(65, {"k", "v"});
    CHECK_THROWS_WITH(save_checkpoint(other, sig, params, {}, &odd), Catch::Contains("at most 64"));
    // A control character (a newline would split load's report) or a name twice: refused.
    odd = saved;
    odd.settings.emplace_back("two\nlines", "1");
    CHECK_THROWS_WITH(save_checkpoint(other, sig, params, {}, &odd), Catch::Contains("printable"));
    odd = saved;
    odd.settings.emplace_back("batch", "32");
    CHECK_THROWS_WITH(save_checkpoint(other, sig, params, {}, &odd), Catch::Contains("share a name"));
    CHECK_FALSE(fs::exists(other));
    // A settings count no writer makes: corrupt, found as it is read (before the checksum, which
    // it would fail too), not 1000 reads.
    save_checkpoint(file, sig, params, {}, &saved);
    bad = read_bytes(file);
    const size_t settings_at = bad.size() - settings_size(saved.settings);
    const std::uint32_t many = 1000;
    std::memcpy(bad.data() + settings_at, &many, 4);
    write_bytes(file, bad);
    CHECK_THAT(load_error(file, sig, p, {}), Catch::Contains("corrupt") && Catch::Contains("1000 settings"));
    // A file that ends inside a setting's value: truncated, in the settings.
    save_checkpoint(file, sig, params, {}, &saved);
    bad = read_bytes(file);
    bad.resize(bad.size() - 5);
    checkpoint_layout::fix_checksum(bad, sig);
    write_bytes(file, bad);
    CHECK_THAT(load_error(file, sig, p, {}), Catch::Contains("truncated") && Catch::Contains("settings"));
    // Under a valid checksum, a setting with a control character or a repeated name: corrupt.
    // The settings are batch = 64, beta1 = 0.9, empty = "" (above), each text after its length byte.
    save_checkpoint(file, sig, params, {}, &saved);
    const std::vector<char> written = read_bytes(file);
    const size_t batch_at = written.size() - settings_size(saved.settings) + 4 + 1;
    const size_t beta1_at = batch_at + 5 + 1 + 2 + 1;
    bad = written;
    bad[batch_at + 2] = '\n';
    checkpoint_layout::fix_checksum(bad, sig);
    write_bytes(file, bad);
    CHECK_THAT(load_error(file, sig, p, {}),
               Catch::Contains("corrupt") && Catch::Contains("control character"));
    bad = written;
    std::memcpy(bad.data() + beta1_at, "batch", 5);
    checkpoint_layout::fix_checksum(bad, sig);
    write_bytes(file, bad);
    CHECK_THAT(load_error(file, sig, p, {}), Catch::Contains("corrupt") && Catch::Contains("share a name"));
    bad = written; // the untouched file loads: the edits above are what was refused
    write_bytes(file, bad);
    CHECK(load_error(file, sig, p, {}).empty());
}

TEST_CASE("checkpoint: a version-2 file (progress without settings) still loads", "[model][checkpoint]") {
    TempDir dir;
    const fs::path file = dir.path / "v2.ckpt";
    const std::string sig = Small::signature();
    const std::vector<float> params = sample_values(Small::param_count, 14);
    const TrainingProgress saved{.step = 40,
                                 .epochs = 2,
                                 .optimizer = "sgd",
                                 .learning_rate = 0.05f,
                                 .optimizer_steps = 40,
                                 .optimizer_state = sample_values(Small::param_count, 15),
                                 .settings = {{"batch", "16"}}};
    save_checkpoint(file, sig, params, {}, &saved);
    std::vector<char> bytes = read_bytes(file);
    checkpoint_layout::make_version_2(bytes, sig, settings_size(saved.settings));
    write_bytes(file, bytes);
    std::vector<float> p(Small::param_count);
    TrainingProgress read;
    load_checkpoint(file, sig, p, {}, &read);
    CHECK(p == params);
    CHECK(read.present);
    CHECK(read.step == 40);
    CHECK(read.optimizer_state == saved.optimizer_state);
    CHECK(read.settings.empty());
}

TEST_CASE("checkpoint: a version-1 file (the model alone) still loads", "[model][checkpoint]") {
    // Written byte by byte in the version-1 layout: the header, then parameters and state, the
    // CRC-32 over those two.
    TempDir dir;
    const fs::path file = dir.path / "v1.ckpt";
    const std::string sig = Small::signature();
    const std::vector<float> params = sample_values(Small::param_count, 12), state = sample_values(2, 13);
    std::vector<char> bytes;
    const auto put = [&](const void* p, size_t n) {
        bytes.insert(bytes.end(), static_cast<const char*>(p), static_cast<const char*>(p) + n);
    };
    const std::uint32_t version = 1, sig_len = static_cast<std::uint32_t>(sig.size());
    const std::uint64_t np = params.size(), ns = state.size();
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(params.data()), static_cast<uInt>(4 * np));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(state.data()), static_cast<uInt>(4 * ns));
    const auto crc32_value = static_cast<std::uint32_t>(crc);
    put(checkpoint_magic, 8);
    put(&version, 4);
    put(&sig_len, 4);
    put(sig.data(), sig.size());
    put(&np, 8);
    put(&ns, 8);
    put(&crc32_value, 4);
    put(params.data(), 4 * np);
    put(state.data(), 4 * ns);
    write_bytes(file, bytes);
    std::vector<float> p(Small::param_count), s(2);
    TrainingProgress read;
    read.step = 5; // a version-1 file has no progress: load leaves the defaults
    load_checkpoint(file, sig, p, s, &read);
    CHECK(p == params);
    CHECK(s == state);
    CHECK_FALSE(read.present);
    CHECK(read.step == 0);
    CHECK(read.optimizer.empty());
    bytes.back() = static_cast<char>(bytes.back() ^ 1);
    write_bytes(file, bytes);
    CHECK_THAT(load_error(file, sig, p, s), Catch::Contains("checksum"));
}

TEST_CASE("checkpoint: saving into a missing directory throws and creates nothing", "[model][checkpoint]") {
    TempDir dir;
    const fs::path missing = dir.path / "no_such_dir";
    std::vector<float> params = sample_values(Small::param_count, 6);
    CHECK_THROWS_AS(save_checkpoint(missing / "m.ckpt", Small::signature(), params, {}), CheckpointError);
    CHECK_THROWS_WITH(save_checkpoint(missing / "m.ckpt", Small::signature(), params, {}),
                      Catch::Contains("m.ckpt"));
    CHECK(!fs::exists(missing));
    CHECK(dir.entries() == 0);
}

namespace {
/// Limits the size of files this process may write (RLIMIT_FSIZE) and ignores SIGXFSZ, so a write
/// past the limit fails with EFBIG. Works for root too, unlike read-only directories.
struct FileSizeLimit {
    rlimit old{};
    void (*old_handler)(int) = nullptr;
    bool ok = false;
    explicit FileSizeLimit(rlim_t bytes) {
        if (::getrlimit(RLIMIT_FSIZE, &old) != 0) return;
        old_handler = std::signal(SIGXFSZ, SIG_IGN);
        rlimit lim = old;
        lim.rlim_cur = bytes;
        ok = ::setrlimit(RLIMIT_FSIZE, &lim) == 0;
    }
    ~FileSizeLimit() {
        ::setrlimit(RLIMIT_FSIZE, &old);
        std::signal(SIGXFSZ, old_handler);
    }
};
} // namespace

TEST_CASE("checkpoint: a failed write keeps the old file and removes the temporary", "[model][checkpoint]") {
    TempDir dir;
    const fs::path file = dir.path / "keep.ckpt";
    std::vector<float> old_params = sample_values(Small::param_count, 8);
    save_checkpoint(file, Small::signature(), old_params, {});
    const std::vector<char> before = read_bytes(file);

    std::vector<float> huge = sample_values(WMlp::param_count, 9); // ~940 KB
    {
        FileSizeLimit limit(64 * 1024);
        if (!limit.ok) {
            WARN("setrlimit(RLIMIT_FSIZE) unavailable; skipping the write-failure check");
            return;
        }
        CHECK_THROWS_AS(save_checkpoint(file, WMlp::signature(), huge, {}), CheckpointError);
    }
    CHECK(read_bytes(file) == before);
    CHECK(dir.entries() == 1);
    std::vector<float> p(Small::param_count);
    load_checkpoint(file, Small::signature(), p, {});
    CHECK(p == old_params);
}

TEST_CASE("checkpoint: a symbolic link is refused, and neither it nor its target changes",
          "[model][checkpoint]") {
    // The rename of the atomic write would replace the link itself and leave its target stale;
    // following it by hand would bypass the kernel's guard against links planted in /tmp.
    TempDir dir;
    const fs::path target = dir.path / "real.ckpt", link = dir.path / "link.ckpt";
    const std::vector<float> first = sample_values(Small::param_count, 10),
                             second = sample_values(Small::param_count, 11);
    save_checkpoint(target, Small::signature(), first, {});
    const std::vector<char> before = read_bytes(target);
    fs::create_symlink("real.ckpt", link);
    CHECK_THROWS_WITH(
        save_checkpoint(link, Small::signature(), second, {}),
        Catch::Contains("link.ckpt: is a symbolic link (to real.ckpt), which the atomic write would "
                        "replace: name the file itself"));
    CHECK(fs::is_symlink(fs::symlink_status(link)));
    CHECK(read_bytes(target) == before);
    CHECK(dir.entries() == 2); // the file and the link: no temporary left
    // A new file gets the permissions the umask leaves; a replaced one keeps its own.
    const fs::path fresh = dir.path / "fresh.ckpt";
    const mode_t mask = ::umask(027);
    save_checkpoint(fresh, Small::signature(), first, {});
    ::umask(mask);
    CHECK((fs::status(fresh).permissions() & fs::perms::all) ==
          (fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read));
    fs::permissions(fresh, fs::perms::owner_read | fs::perms::owner_write);
    save_checkpoint(fresh, Small::signature(), second, {});
    CHECK((fs::status(fresh).permissions() & fs::perms::all) ==
          (fs::perms::owner_read | fs::perms::owner_write));
}

TEST_CASE("checkpoint: a path that is no regular file is neither replaced nor opened",
          "[model][checkpoint]") {
    TempDir dir;
    const std::vector<float> params = sample_values(Small::param_count, 12);
    // A FIFO: the rename would have replaced it, and opening it to read would wait for a writer
    // for ever. (If it did, the writer opened below after a second lets the test end.)
    const fs::path fifo = dir.path / "pipe";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK_THROWS_WITH(save_checkpoint(fifo, Small::signature(), params, {}),
                      Catch::Contains("is not a regular file (a device, FIFO or socket)"));
    CHECK(fs::is_fifo(fifo));
    std::thread unblock([&] {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
        if (fd >= 0) ::close(fd);
    });
    std::vector<float> p(Small::param_count);
    CHECK_THAT(load_error(fifo, Small::signature(), p, {}),
               Catch::Contains("pipe is a FIFO, not a regular file"));
    unblock.join();
    // A device, and an empty path.
    CHECK_THROWS_WITH(save_checkpoint("/dev/null", Small::signature(), params, {}),
                      Catch::Contains("cannot write checkpoint /dev/null: is not a regular file"));
    CHECK(fs::is_character_file("/dev/null"));
    CHECK_THROWS_WITH(save_checkpoint("", Small::signature(), params, {}),
                      Catch::Contains("the path is empty"));
    // A path ending in '/', and a name whose temporary file's name would be too long: refused
    // before anything is written (a run checks its outputs with atomic_write_problem first).
    CHECK_THROWS_WITH(save_checkpoint(dir.path / "sub/", Small::signature(), params, {}),
                      Catch::Contains("ends in '/', which names a folder"));
    const auto name_max = static_cast<std::size_t>(::pathconf(dir.path.c_str(), _PC_NAME_MAX));
    REQUIRE(name_max > pardl::temporary_suffix_length);
    const std::string longest(name_max - pardl::temporary_suffix_length, 'a');
    CHECK_THROWS_WITH(save_checkpoint(dir.path / (longest + "a"), Small::signature(), params, {}),
                      Catch::Contains("its name is " + std::to_string(longest.size() + 1) +
                                      " bytes, and with the temporary file's suffix (" +
                                      std::to_string(pardl::temporary_suffix_length) +
                                      ") it would pass the folder's limit of " + std::to_string(name_max)));
    save_checkpoint(dir.path / longest, Small::signature(), params, {}); // the longest that fits
    CHECK(fs::is_regular_file(dir.path / longest));
    fs::remove(dir.path / longest);
    CHECK(dir.entries() == 1); // the FIFO alone
}

TEST_CASE("checkpoint: a model signature that is not text is a corrupt header, not printed",
          "[model][checkpoint]") {
    TempDir dir;
    const fs::path file = dir.path / "sig.ckpt";
    save_checkpoint(file, Small::signature(), sample_values(Small::param_count, 13), {});
    std::vector<char> bytes = read_bytes(file);
    bytes[16] = '\x01'; // the signature's first byte, after magic (8), version (4) and its length (4)
    std::ofstream(file, std::ios::binary | std::ios::trunc)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    std::vector<float> p(Small::param_count);
    const std::string error = load_error(file, Small::signature(), p, {});
    CHECK_THAT(error, Catch::Contains("has a corrupt header (its model signature is not text)"));
    CHECK(error.find('\x01') == std::string::npos);
    // A byte that is not UTF-8 (0xFF), or a C1 control (U+009B, a terminal's CSI), is no text either.
    for (const char* bad : {"\xff", "\xc2\x9b"}) {
        INFO(static_cast<int>(static_cast<unsigned char>(bad[0])));
        std::vector<char> altered = bytes;
        std::memcpy(altered.data() + 16, bad, std::strlen(bad));
        std::ofstream(file, std::ios::binary | std::ios::trunc)
            .write(altered.data(), static_cast<std::streamsize>(altered.size()));
        const std::string e = load_error(file, Small::signature(), p, {});
        CHECK_THAT(e, Catch::Contains("has a corrupt header (its model signature is not text)"));
        CHECK(e.find(bad) == std::string::npos);
    }
}

TEST_CASE("checkpoint texts are printable UTF-8", "[model][checkpoint]") {
    using pardl::detail::is_printable_text;
    CHECK(is_printable_text(""));
    CHECK(is_printable_text("784-Dense<256>"));
    CHECK(is_printable_text("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")); // é, €, an emoji
    CHECK(is_printable_text("\xc2\xa0"));                                  // U+00A0, past C1
    CHECK_FALSE(is_printable_text("a\nb"));
    CHECK_FALSE(is_printable_text("\x7f"));
    CHECK_FALSE(is_printable_text("\xc2\x80")); // U+0080, C1
    CHECK_FALSE(is_printable_text("\xc2\x9f")); // U+009F, C1
    CHECK_FALSE(is_printable_text("\xff"));
    CHECK_FALSE(is_printable_text("\x80"));             // a continuation byte alone
    CHECK_FALSE(is_printable_text("\xc3"));             // cut short
    CHECK_FALSE(is_printable_text("\xc0\xaf"));         // overlong '/'
    CHECK_FALSE(is_printable_text("\xe0\x80\xaf"));     // overlong '/'
    CHECK_FALSE(is_printable_text("\xed\xa0\x80"));     // a surrogate
    CHECK_FALSE(is_printable_text("\xf4\x90\x80\x80")); // past U+10FFFF
    CHECK_FALSE(is_printable_text("\xe2\x82"));         // cut short
}
