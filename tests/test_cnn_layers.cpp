// CNN layers: finite-difference gradient checks of Conv2D, the pools, BatchNorm and Dropout (alone
// and inside small models), forward values against naive double-precision and hand-worked
// references, and the partition independence of synchronized batch norm and of dropout masks.
// Code with one path per instruction set (im2col, col2im, max pooling, the GEMM under Conv2D) is
// checked under every instruction set the CPU runs.
#include "pardl/layers/avg_pool2d.hpp"
#include "pardl/layers/batch_norm.hpp"
#include "pardl/layers/conv2d.hpp"
#include "pardl/layers/dense.hpp"
#include "pardl/layers/dropout.hpp"
#include "pardl/layers/flatten.hpp"
#include "pardl/layers/max_pool2d.hpp"
#include "pardl/layers/relu.hpp"
#include "pardl/layers/tanh.hpp"
#include "pardl/losses/softmax_cross_entropy.hpp"
#include "pardl/model/sequential.hpp"
#include "pardl/tensor/buffer.hpp"
#include "pardl/tensor/gemm.hpp"
#include "pardl/tensor/im2col.hpp"
#include "pardl/testing/gradcheck.hpp"

#include "each_isa.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using namespace pardl;
using pardl::testing::check_layer;
using pardl::testing::check_model;
using pardl::testing::GradcheckOptions;

namespace {

template <class L>
void require_layer_gradients(std::size_t rows, GradcheckOptions o = {}) {
    const auto report = check_layer<L>(rows, o);
    INFO(L::name() << " on " << L::input_shape::str() << ": " << report.summary());
    REQUIRE(report.ok);
}

std::vector<float> random_values(std::size_t n, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
    Rng rng(seed, 11);
    std::vector<float> v(n);
    for (float& x : v) x = rng.uniform(lo, hi);
    return v;
}

/// Relative closeness of two vectors in the max norm.
double max_rel_diff(std::span<const float> a, std::span<const float> b) {
    double diff = 0, scale = 1e-12;
    for (std::size_t i = 0; i < a.size(); ++i) {
        diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
        scale = std::max(scale, std::abs(static_cast<double>(b[i])));
    }
    return diff / scale;
}

/// Runs a bound layer's forward on given params and inputs; returns the output.
template <class L>
std::vector<float> run_forward(L& layer, std::span<const float> params, std::span<float> state,
                               const std::vector<float>& x, std::size_t rows, const StepContext& ctx = {}) {
    std::vector<float> y(rows * L::output_shape::size);
    layer.forward(LayerSlots{params, {}, state}, ConstMatrix{x.data(), rows, L::input_shape::size},
                  Matrix{y.data(), rows, L::output_shape::size}, ctx);
    return y;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Shapes, names, acceptance

TEST_CASE("CNN layer shapes, names and acceptance", "[cnn]") {
    using C1 = Conv2D<32, 3, 1, 1>::bind<Shape<1, 28, 28>>;
    STATIC_REQUIRE(std::is_same_v<C1::output_shape, Shape<32, 28, 28>>);
    STATIC_REQUIRE(C1::param_count == 32 * 9 + 32);
    STATIC_REQUIRE(std::is_same_v<Conv2D<4, 3, 2, 1>::bind<Shape<3, 7, 6>>::output_shape, Shape<4, 4, 3>>);
    STATIC_REQUIRE(std::is_same_v<Conv2D<2, 5>::bind<Shape<1, 5, 5>>::output_shape, Shape<2, 1, 1>>);
    STATIC_REQUIRE(std::is_same_v<MaxPool2D<2>::bind<Shape<32, 28, 28>>::output_shape, Shape<32, 14, 14>>);
    STATIC_REQUIRE(std::is_same_v<MaxPool2D<3, 2>::bind<Shape<1, 7, 6>>::output_shape, Shape<1, 3, 2>>);
    STATIC_REQUIRE(std::is_same_v<AvgPool2D<2>::bind<Shape<3, 5, 5>>::output_shape, Shape<3, 2, 2>>);
    STATIC_REQUIRE(BatchNorm<>::bind<Shape<3, 4, 4>>::param_count == 6);
    STATIC_REQUIRE(BatchNorm<>::bind<Shape<10>>::state_count == 20);

    STATIC_REQUIRE(Conv2D<2, 3>::accepts<Shape<1, 3, 3>>);
    STATIC_REQUIRE(Conv2D<2, 3, 1, 1>::accepts<Shape<1, 1, 1>>);
    STATIC_REQUIRE_FALSE(Conv2D<2, 3>::accepts<Shape<1, 2, 5>>);
    STATIC_REQUIRE_FALSE(Conv2D<2, 3>::accepts<Shape<9>>);
    STATIC_REQUIRE_FALSE(MaxPool2D<2>::accepts<Shape<1, 1, 4>>);
    STATIC_REQUIRE_FALSE(MaxPool2D<2>::accepts<Shape<16>>);
    STATIC_REQUIRE_FALSE(AvgPool2D<3>::accepts<Shape<2, 2, 8>>);
    STATIC_REQUIRE(BatchNorm<>::accepts<Shape<7>>);
    STATIC_REQUIRE_FALSE(BatchNorm<>::accepts<Shape<2, 7>>);
    STATIC_REQUIRE(BoundLayer<Dropout<500>::bind<Shape<3, 2, 2>>>);

    CHECK(Conv2D<32, 3, 1, 1>::name() == "Conv2D<32,3,s1,p1>");
    CHECK(MaxPool2D<2>::name() == "MaxPool2D<2>");
    CHECK(MaxPool2D<3, 2>::name() == "MaxPool2D<3,s2>");
    CHECK(AvgPool2D<2>::name() == "AvgPool2D<2>");
    CHECK(SyncBatchNorm::name() == "BatchNorm");
    CHECK(LocalBatchNorm::name() == "LocalBatchNorm");
    CHECK(Dropout<500>::name() == "Dropout<500>");

    using Net = Sequential<Input<1, 28, 28>, Conv2D<32, 3, 1, 1>, ReLU, MaxPool2D<2>, Conv2D<64, 3, 1, 1>,
                           ReLU, MaxPool2D<2>, Flatten, Dense<128>, ReLU, Dropout<500>, Dense<10>>;
    STATIC_REQUIRE(std::is_same_v<Net::output_shape, Shape<10>>);
    CHECK(Net::output_shapes()[5] == "64x7x7");
}

// ---------------------------------------------------------------------------------------------
// im2col / Conv2D

namespace {
/// Geometries for im2col and col2im: strides, paddings that swallow whole rows, and rows of 16 or
/// fewer (the AVX-512 narrow paths) next to rows just past 16; the last four have channels that
/// fill whole vectors or end ragged, for the channels-last rows of im2row and row2im.
const ConvGeometry im2col_geometries[] = {{2, 5, 4, 3, 1, 1},   {1, 7, 6, 3, 2, 1},   {3, 4, 4, 1, 1, 0},
                                          {1, 3, 3, 1, 2, 2},   {2, 3, 5, 2, 3, 2},   {1, 4, 4, 4, 1, 0},
                                          {2, 6, 16, 3, 1, 1},  {1, 5, 17, 3, 1, 1},  {2, 4, 9, 5, 1, 2},
                                          {1, 3, 3, 1, 1, 2},   {3, 14, 14, 3, 1, 1}, {1, 2, 7, 3, 1, 2},
                                          {2, 14, 14, 5, 1, 2}, {1, 16, 16, 7, 1, 3}, {32, 5, 6, 3, 1, 1},
                                          {20, 6, 5, 3, 2, 1},  {17, 4, 4, 2, 1, 0},  {16, 7, 7, 5, 2, 2}};
} // namespace

TEST_CASE("im2col and col2im are adjoint", "[cnn][im2col]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    // <col2im(c), x> == <c, im2col(x)> for every geometry.
    for (const auto& g : im2col_geometries) {
        REQUIRE(g.valid());
        const std::size_t n_in = g.channels * g.height * g.width, n_col = g.patch_size() * g.out_pixels();
        const auto x = random_values(n_in, 1), c = random_values(n_col, 2);
        std::vector<float> col(n_col, 7.0f), back(n_in, 0.0f);
        im2col(g, x.data(), col.data());
        col2im(g, c.data(), back.data());
        double lhs = 0, rhs = 0;
        for (std::size_t i = 0; i < n_in; ++i) lhs += static_cast<double>(back[i]) * x[i];
        for (std::size_t i = 0; i < n_col; ++i) rhs += static_cast<double>(c[i]) * col[i];
        CHECK(lhs == Approx(rhs).epsilon(1e-5));
    }
}

TEST_CASE("im2col and col2im give the same bits under every instruction set", "[cnn][im2col]") {
    // Every path adds a column gradient's contributions in the same (kh, kw) order, so training
    // results do not depend on which one the CPU takes. The reference is the portable path.
    PARDL_TEST_EACH_SUPPORTED_ISA();
    for (const auto& g : im2col_geometries) {
        const std::size_t n_in = g.channels * g.height * g.width, n_col = g.patch_size() * g.out_pixels();
        const auto x = random_values(n_in, 5), c = random_values(n_col, 6), start = random_values(n_in, 7);
        std::vector<float> col(n_col, 7.0f), col_ref(n_col, -7.0f), back(start), back_ref(start);
        im2col(g, x.data(), col.data());
        col2im(g, c.data(), back.data());
        {
            const simd::ScopedIsa portable(simd::Isa::generic);
            im2col(g, x.data(), col_ref.data());
            col2im(g, c.data(), back_ref.data());
        }
        INFO("geometry C" << g.channels << " H" << g.height << " W" << g.width << " K" << g.kernel << " S"
                          << g.stride << " P" << g.padding);
        CHECK(std::memcmp(col.data(), col_ref.data(), n_col * sizeof(float)) == 0);
        CHECK(std::memcmp(back.data(), back_ref.data(), n_in * sizeof(float)) == 0);
    }
}

TEST_CASE("im2col and col2im with a row stride give the rows of the packed form", "[cnn][im2col]") {
    // Conv2D pads its column rows to whole cache lines (gemm_vector_row_stride): every path must
    // write each row where the stride puts it, leave the floats between rows alone, and read the
    // column gradient back from there with the same bits as from packed rows.
    PARDL_TEST_EACH_SUPPORTED_ISA();
    for (const auto& g : im2col_geometries) {
        const std::size_t n_in = g.channels * g.height * g.width, patch = g.patch_size(), P = g.out_pixels();
        const std::size_t ld = gemm_vector_row_stride(P) + 3; // never P, and not a whole line either
        const auto x = random_values(n_in, 10), c = random_values(patch * P, 11),
                   start = random_values(n_in, 12);
        std::vector<float> col(patch * P), strided(patch * ld, 7.0f), c_strided(patch * ld, 1e30f);
        for (std::size_t r = 0; r < patch; ++r) std::copy_n(c.data() + r * P, P, c_strided.data() + r * ld);
        std::vector<float> back(start), back_strided(start);
        im2col(g, x.data(), col.data());
        im2col(g, x.data(), strided.data(), ld);
        col2im(g, c.data(), back.data());
        col2im(g, c_strided.data(), ld, back_strided.data());

        INFO("geometry C" << g.channels << " H" << g.height << " W" << g.width << " K" << g.kernel << " S"
                          << g.stride << " P" << g.padding);
        bool rows_match = true, gaps_kept = true;
        for (std::size_t r = 0; r < patch; ++r) {
            rows_match &= std::memcmp(col.data() + r * P, strided.data() + r * ld, P * sizeof(float)) == 0;
            gaps_kept &= std::all_of(strided.begin() + static_cast<std::ptrdiff_t>(r * ld + P),
                                     strided.begin() + static_cast<std::ptrdiff_t>((r + 1) * ld),
                                     [](float v) { return v == 7.0f; });
        }
        CHECK(rows_match);
        CHECK(gaps_kept);
        CHECK(std::memcmp(back.data(), back_strided.data(), n_in * sizeof(float)) == 0);
    }
}

namespace {
/// Bit pattern of a float, so that comparisons tell -0 from +0 and NaN equals itself.
std::uint32_t bits(float v) {
    return std::bit_cast<std::uint32_t>(v);
}
} // namespace

TEST_CASE("im2row and row2im are im2col and col2im with the patch reordered, bit for bit", "[cnn][im2col]") {
    // im2row reads the sample channels-last and writes one row per output pixel, its patch in
    // (kh, kw, c) order; row2im scatters such rows back and must give every input the same sum, in
    // the same order, as col2im does from the matching columns (Conv2D's backward relies on it).
    PARDL_TEST_EACH_SUPPORTED_ISA();
    for (const auto& g : im2col_geometries) {
        const std::size_t C = g.channels, H = g.height, W = g.width, K = g.kernel, P = g.out_pixels();
        const std::size_t n_in = C * H * W, patch = g.patch_size(), n_col = patch * P;
        // Element (c, kh, kw) of pixel p: its index in im2col's columns and in im2row's rows.
        const auto col_at = [&](std::size_t c, std::size_t kh, std::size_t kw, std::size_t p) {
            return ((c * K + kh) * K + kw) * P + p;
        };
        const auto row_at = [&](std::size_t c, std::size_t kh, std::size_t kw, std::size_t p) {
            return p * patch + (kh * K + kw) * C + c;
        };
        const auto x = random_values(n_in, 8), cg = random_values(n_col, 9);
        std::vector<float> x_last(n_in), rows(n_col, 7.0f), cols(n_col), rg(n_col);
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t i = 0; i < H * W; ++i) x_last[i * C + c] = x[c * H * W + i];
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t kh = 0; kh < K; ++kh)
                for (std::size_t kw = 0; kw < K; ++kw)
                    for (std::size_t p = 0; p < P; ++p) rg[row_at(c, kh, kw, p)] = cg[col_at(c, kh, kw, p)];
        im2col(g, x.data(), cols.data());
        im2row(g, x_last.data(), rows.data());
        std::vector<float> back(n_in, 0.0f), back_last(n_in, 5.0f); // row2im overwrites
        col2im(g, cg.data(), back.data());
        row2im(g, rg.data(), back_last.data());

        INFO("geometry C" << C << " H" << H << " W" << W << " K" << K << " S" << g.stride << " P"
                          << g.padding);
        std::size_t wrong_rows = 0, wrong_back = 0;
        for (std::size_t c = 0; c < C; ++c) {
            for (std::size_t kh = 0; kh < K; ++kh)
                for (std::size_t kw = 0; kw < K; ++kw)
                    for (std::size_t p = 0; p < P; ++p)
                        wrong_rows += bits(rows[row_at(c, kh, kw, p)]) != bits(cols[col_at(c, kh, kw, p)]);
            for (std::size_t i = 0; i < H * W; ++i)
                wrong_back += bits(back_last[i * C + c]) != bits(back[c * H * W + i]);
        }
        CHECK(wrong_rows == 0);
        CHECK(wrong_back == 0);
    }
}

TEST_CASE("Conv2D's channels-last backward gives the bits of the im2col formulation", "[cnn][conv]") {
    // Conv2D's backward goes through im2row (Conv2D::bind::channels_last). Its weight, bias and
    // input gradients must equal, bit for bit, what dW = dy colsᵀ and col2im(Wᵀ dy) give sample by
    // sample, so that the layout is an implementation detail that no training result depends on.
    PARDL_TEST_EACH_SUPPORTED_ISA();
    const auto check = []<class L>(std::type_identity<L>) {
        STATIC_REQUIRE(L::channels_last);
        constexpr std::size_t out_c = L::output_shape::dims[0], patch = L::weight_count / out_c;
        constexpr std::size_t pixels = L::output_shape::size / out_c, in_size = L::input_shape::size;
        const std::size_t rows = 3;
        const auto params = random_values(L::param_count, 21);
        const auto x = random_values(rows * in_size, 22),
                   dy = random_values(rows * L::output_shape::size, 23);
        std::vector<float> grads(L::param_count, 9.0f), dx(rows * in_size, 9.0f); // both overwritten
        L layer(rows);
        const auto y = run_forward(layer, params, {}, x, rows);
        layer.backward(LayerSlots{params, grads, {}}, ConstMatrix{x.data(), rows, in_size},
                       ConstMatrix{y.data(), rows, L::output_shape::size},
                       ConstMatrix{dy.data(), rows, L::output_shape::size}, Matrix{dx.data(), rows, in_size},
                       StepContext{.overwrite_grads = true});

        std::vector<float> ref(L::param_count, 0.0f), dx_ref(rows * in_size, 0.0f), cols(patch * pixels);
        float* dw = ref.data();
        float* db = dw + L::weight_count;
        for (std::size_t r = 0; r < rows; ++r) {
            const float* g = dy.data() + r * L::output_shape::size;
            im2col(L::geometry, x.data() + r * in_size, cols.data());
            gemm(Op::N, Op::T, out_c, patch, pixels, g, pixels, cols.data(), pixels, r == 0 ? 0.0f : 1.0f, dw,
                 patch);
            for (std::size_t o = 0; o < out_c; ++o) db[o] += detail::sum_floats(g + o * pixels, pixels);
            gemm(Op::T, Op::N, patch, pixels, out_c, params.data(), patch, g, pixels, 0.0f, cols.data(),
                 pixels);
            col2im(L::geometry, cols.data(), dx_ref.data() + r * in_size);
        }
        INFO(L::name() << " on " << L::input_shape::str());
        CHECK(std::memcmp(grads.data(), ref.data(), ref.size() * sizeof(float)) == 0);
        CHECK(std::memcmp(dx.data(), dx_ref.data(), dx_ref.size() * sizeof(float)) == 0);
    };
    check(std::type_identity<Conv2D<17, 3, 1, 1>::bind<Shape<20, 6, 5>>>{});   // GEMM rows beyond one sliver
    check(std::type_identity<Conv2D<4, 3, 2, 1>::bind<Shape<3, 7, 6>>>{});     // strided, padded
    check(std::type_identity<Conv2D<3, 2, 3, 2>::bind<Shape<2, 5, 7>>>{});     // windows of padding only
    check(std::type_identity<Conv2D<2, 3>::bind<Shape<1, 5, 5>>>{});           // one channel: no reordering
    check(std::type_identity<Conv2D<64, 3, 1, 1>::bind<Shape<32, 14, 14>>>{}); // W-CNN's second convolution
}

namespace {

/// Direct convolution in double: the reference for Conv2D's forward.
template <std::size_t OutC, std::size_t K, std::size_t S, std::size_t P, class In>
void check_conv_forward() {
    using L = typename Conv2D<OutC, K, S, P>::template bind<In>;
    constexpr std::size_t C = In::dims[0], H = In::dims[1], W = In::dims[2];
    constexpr std::size_t OH = L::output_shape::dims[1], OW = L::output_shape::dims[2];
    const std::size_t rows = 3;
    const auto params = random_values(L::param_count, 3);
    const auto x = random_values(rows * In::size, 4);
    L layer(rows);
    const auto y = run_forward(layer, params, {}, x, rows);
    std::vector<float> ref(y.size());
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t o = 0; o < OutC; ++o)
            for (std::size_t oh = 0; oh < OH; ++oh)
                for (std::size_t ow = 0; ow < OW; ++ow) {
                    double acc = params[L::weight_count + o];
                    for (std::size_t c = 0; c < C; ++c)
                        for (std::size_t kh = 0; kh < K; ++kh)
                            for (std::size_t kw = 0; kw < K; ++kw) {
                                const auto ih = static_cast<long>(oh * S + kh) - static_cast<long>(P);
                                const auto iw = static_cast<long>(ow * S + kw) - static_cast<long>(P);
                                if (ih < 0 || iw < 0 || ih >= static_cast<long>(H) ||
                                    iw >= static_cast<long>(W))
                                    continue;
                                acc += static_cast<double>(params[((o * C + c) * K + kh) * K + kw]) *
                                       x[r * In::size + (c * H + static_cast<std::size_t>(ih)) * W +
                                         static_cast<std::size_t>(iw)];
                            }
                    ref[r * L::output_shape::size + (o * OH + oh) * OW + ow] = static_cast<float>(acc);
                }
    INFO(L::name() << " on " << In::str());
    CHECK(max_rel_diff(y, ref) < 1e-5);
}

} // namespace

TEST_CASE("Conv2D forward matches a direct double-precision convolution", "[cnn][conv]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    check_conv_forward<2, 3, 1, 0, Shape<1, 5, 5>>();
    check_conv_forward<4, 3, 2, 1, Shape<3, 7, 6>>();
    check_conv_forward<3, 1, 1, 0, Shape<2, 4, 4>>();  // 1x1: columns are the sample itself
    check_conv_forward<2, 4, 1, 0, Shape<2, 4, 4>>();  // kernel as large as the image
    check_conv_forward<5, 3, 1, 1, Shape<3, 9, 11>>(); // W-CNN-like, odd sizes
    check_conv_forward<2, 1, 2, 1, Shape<1, 3, 3>>();  // outputs that read only padding
    check_conv_forward<3, 2, 3, 2, Shape<2, 5, 7>>();
    check_conv_forward<17, 3, 1, 1, Shape<20, 6, 5>>(); // GEMM depth and rows beyond one sliver
}

TEST_CASE("Sequential fuses a ReLU into the Conv2D before it, forward and backward, bit for bit",
          "[cnn][conv][fusion]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    // Conv-ReLU pairs fuse; a ReLU after BatchNorm or Dense does not (they do not offer it). A ReLU
    // right before a max pooling goes to the pooling instead (next test).
    using M = Sequential<Input<3, 9, 11>, Conv2D<5, 3, 1, 1>, ReLU, Conv2D<17, 3, 1, 1>, BatchNorm<>, ReLU,
                         MaxPool2D<2>, Flatten, Dense<4>, ReLU>;
    STATIC_REQUIRE(M::fused ==
                   std::array<bool, 9>{false, true, false, false, true, false, false, false, false});
    STATIC_REQUIRE(M::relu_by_next ==
                   std::array<bool, 9>{false, false, false, false, true, false, false, false, false});
    STATIC_REQUIRE(M::runs_relu(0) && !M::runs_relu(2) && !M::runs_relu(3) && M::runs_relu(5));

    // The fused pair against the two layers run one after the other.
    using Pair = Sequential<Input<3, 9, 11>, Conv2D<17, 3, 1, 1>, ReLU>;
    const std::size_t rows = 3;
    const auto params = random_values(Pair::param_count, 5);
    const auto x = random_values(rows * Pair::input_shape::size, 6);
    Pair::Workspace ws(rows);
    const ConstMatrix y =
        Pair::forward(params, {}, ConstMatrix{x.data(), rows, Pair::input_shape::size}, ws, StepContext{});

    using Conv = Pair::layer_t<0>;
    Conv conv(rows);
    auto ref = run_forward(conv, params, {}, x, rows);
    for (float& v : ref) v = detail::ReluFn::value(v);
    REQUIRE(y.rows * y.cols == ref.size());
    CHECK(std::memcmp(y.data, ref.data(), ref.size() * sizeof(float)) == 0);
    // The conv's output is the ReLU's: one buffer.
    CHECK(ws.output(0).data == ws.output(1).data);

    // Backward: the conv applies the ReLU's derivative itself; against the ReLU layer's backward
    // followed by the conv's plain backward. Some output gradients are negative zero, so the sign
    // of dy * 0 counts too.
    const std::size_t out_size = Pair::output_shape::size, in_size = Pair::input_shape::size;
    auto dy = random_values(rows * out_size, 7);
    for (std::size_t i = 0; i < dy.size(); i += 5) dy[i] = -0.0f;
    const Matrix dy_fused = ws.output_gradient();
    std::copy(dy.begin(), dy.end(), dy_fused.data);
    std::vector<float> grads(Pair::param_count, 0.0f), dx(rows * in_size, 0.0f);
    Pair::backward(params, grads, {}, ConstMatrix{x.data(), rows, in_size}, ws, StepContext{},
                   Matrix{dx.data(), rows, in_size});

    using Relu = Pair::layer_t<1>;
    Relu relu(rows);
    std::vector<float> dy_masked(dy.size()), grads_ref(Pair::param_count, 0.0f), dx_ref(rows * in_size, 0.0f);
    relu.backward(LayerSlots{}, ConstMatrix{ref.data(), rows, out_size},
                  ConstMatrix{ref.data(), rows, out_size}, ConstMatrix{dy.data(), rows, out_size},
                  Matrix{dy_masked.data(), rows, out_size}, StepContext{});
    conv.backward(LayerSlots{params, grads_ref, {}}, ConstMatrix{x.data(), rows, in_size},
                  ConstMatrix{ref.data(), rows, out_size}, ConstMatrix{dy_masked.data(), rows, out_size},
                  Matrix{dx_ref.data(), rows, in_size}, StepContext{});
    CHECK(std::memcmp(grads.data(), grads_ref.data(), grads.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(dx.data(), dx_ref.data(), dx.size() * sizeof(float)) == 0);
}

TEST_CASE("Sequential runs a ReLU before a max pooling inside the pooling, on its output",
          "[cnn][pool][fusion]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    using Wcnn = Sequential<Input<1, 28, 28>, Conv2D<32, 3, 1, 1>, ReLU, MaxPool2D<2>, Conv2D<64, 3, 1, 1>,
                            ReLU, MaxPool2D<2>, Flatten, Dense<256>, ReLU, Dense<10>>;
    STATIC_REQUIRE(Wcnn::fused ==
                   std::array<bool, 10>{false, true, false, false, true, false, false, false, false, false});
    STATIC_REQUIRE(Wcnn::relu_by_next ==
                   std::array<bool, 10>{false, true, false, false, true, false, false, false, false, false});
    // The convolutions run plain, the poolings run a ReLU (Dense offers no fusion).
    STATIC_REQUIRE(!Wcnn::runs_relu(0) && Wcnn::runs_relu(2) && !Wcnn::runs_relu(3) && Wcnn::runs_relu(5) &&
                   !Wcnn::runs_relu(7));

    // Against the three layers run one after the other in the model's order: conv, ReLU, pool.
    // The 2x2 poolings take the vector paths under AVX-512 and AVX2 (the 9 x 11 input leaves an odd border);
    // 3x3 windows at stride 2 overlap and take the general loop.
    const auto check = [](auto model_tag) {
        using Net = typename decltype(model_tag)::type;
        using Conv = typename Net::template layer_t<0>;
        using Relu = typename Net::template layer_t<1>;
        using Pool = typename Net::template layer_t<2>;
        STATIC_REQUIRE(Net::relu_by_next[1] && !Net::runs_relu(0) && Net::runs_relu(2));
        constexpr std::size_t rows = 3, in_size = Net::input_shape::size;
        constexpr std::size_t mid = Conv::output_shape::size, out = Net::output_shape::size;
        const auto params = random_values(Net::param_count, 11);
        const auto x = random_values(rows * in_size, 12);
        typename Net::Workspace ws(rows);
        const ConstMatrix y =
            Net::forward(params, {}, ConstMatrix{x.data(), rows, in_size}, ws, StepContext{});

        Conv conv(rows);
        Relu relu(rows);
        Pool pool(rows);
        const auto z = run_forward(conv, params, {}, x, rows);
        const auto a = run_forward(relu, {}, {}, z, rows);
        const auto ref = run_forward(pool, {}, {}, a, rows);
        // Max pooling commutes with ReLU bit for bit: max(ReLU(z)) and ReLU(max(z)) are one value.
        REQUIRE(y.rows * y.cols == ref.size());
        CHECK(std::memcmp(y.data, ref.data(), ref.size() * sizeof(float)) == 0);
        // The ReLU's output is not materialised: the model keeps the convolution's raw output.
        CHECK(ws.output(1).data == ws.output(0).data);
        CHECK(std::memcmp(ws.output(0).data, z.data(), z.size() * sizeof(float)) == 0);

        auto dy = random_values(rows * out, 13);
        for (std::size_t i = 0; i < dy.size(); i += 5) dy[i] = -0.0f;
        std::copy(dy.begin(), dy.end(), ws.output_gradient().data);
        std::vector<float> grads(Net::param_count, 0.0f), dx(rows * in_size, 0.0f);
        Net::backward(params, grads, {}, ConstMatrix{x.data(), rows, in_size}, ws, StepContext{},
                      Matrix{dx.data(), rows, in_size});

        std::vector<float> da(rows * mid), dz(rows * mid), grads_ref(Net::param_count, 0.0f),
            dx_ref(rows * in_size, 0.0f);
        pool.backward(LayerSlots{}, ConstMatrix{a.data(), rows, mid}, ConstMatrix{ref.data(), rows, out},
                      ConstMatrix{dy.data(), rows, out}, Matrix{da.data(), rows, mid}, StepContext{});
        relu.backward(LayerSlots{}, ConstMatrix{z.data(), rows, mid}, ConstMatrix{a.data(), rows, mid},
                      ConstMatrix{da.data(), rows, mid}, Matrix{dz.data(), rows, mid}, StepContext{});
        conv.backward(LayerSlots{params, grads_ref, {}}, ConstMatrix{x.data(), rows, in_size},
                      ConstMatrix{z.data(), rows, mid}, ConstMatrix{dz.data(), rows, mid},
                      Matrix{dx_ref.data(), rows, in_size}, StepContext{});
        // Equal values, not always equal bits: in a window with no positive value the pooling
        // records the raw maximum as the winner where the unfused order records the first of the
        // ReLU's zeros, so a zero gradient (+0 or -0) may sit at another position.
        CHECK(grads == grads_ref);
        CHECK(dx == dx_ref);
        std::size_t nonzero = 0;
        for (float g : dx) nonzero += g != 0.0f;
        CHECK(nonzero > dx.size() / 8); // the comparison is not between zeros
    };
    // A ReLU on the model's input stays a layer of its own: no earlier output could stand for it.
    using InputRelu = Sequential<Input<1, 4, 4>, ReLU, MaxPool2D<2>>;
    STATIC_REQUIRE(InputRelu::fused == std::array<bool, 2>{false, false});
    const float image[] = {-1, 2, -3, -4, /**/ -5, -6, 7, 8, /**/ -9, -1, 0, -2, /**/ -3, -4, -5, -6};
    InputRelu::Workspace input_ws(1);
    const ConstMatrix pooled = InputRelu::forward({}, {}, ConstMatrix{image, 1, 16}, input_ws, StepContext{});
    CHECK(std::vector<float>(pooled.data, pooled.data + 4) == std::vector<float>{2, 8, 0, 0});

    check(std::type_identity<Sequential<Input<3, 9, 11>, Conv2D<5, 3, 1, 1>, ReLU, MaxPool2D<2>>>{});
    check(std::type_identity<Sequential<Input<2, 9, 9>, Conv2D<4, 3, 1, 1>, ReLU, MaxPool2D<3, 2>>>{});
}

TEST_CASE("Conv2D gradients match finite differences", "[cnn][conv][gradcheck]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    require_layer_gradients<Conv2D<2, 3>::bind<Shape<1, 5, 5>>>(3);
    require_layer_gradients<Conv2D<4, 3, 2, 1>::bind<Shape<3, 7, 6>>>(2);
    require_layer_gradients<Conv2D<3, 1>::bind<Shape<2, 4, 4>>>(3);
    require_layer_gradients<Conv2D<2, 4>::bind<Shape<2, 4, 4>>>(3);
    require_layer_gradients<Conv2D<3, 3, 2, 0>::bind<Shape<2, 7, 5>>>(2);
    require_layer_gradients<Conv2D<2, 3, 3, 2>::bind<Shape<1, 5, 7>>>(2);
    require_layer_gradients<Conv2D<2, 1, 2, 1>::bind<Shape<2, 3, 3>>>(2);
    require_layer_gradients<Conv2D<3, 2, 1, 1, XavierUniform>::bind<Shape<2, 3, 4>>>(2);
}

// ---------------------------------------------------------------------------------------------
// Pooling

TEST_CASE("MaxPool2D and AvgPool2D on hand-worked examples", "[cnn][pool]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    // One 1 x 4 x 4 sample.
    const std::vector<float> x = {1,  5, 2, 0, //
                                  3,  4, 8, 6, //
                                  -1, 9, 7, 2, //
                                  0,  2, 3, -4};
    const std::vector<float> dy = {1, 2, 3, 4};
    SECTION("MaxPool2D<2>") {
        MaxPool2D<2>::bind<Shape<1, 4, 4>> pool(1);
        const auto y = run_forward(pool, {}, {}, x, 1);
        CHECK(y == std::vector<float>{5, 8, 9, 7});
        std::vector<float> dx(16, -1.0f);
        pool.backward({}, ConstMatrix{x.data(), 1, 16}, ConstMatrix{y.data(), 1, 4},
                      ConstMatrix{dy.data(), 1, 4}, Matrix{dx.data(), 1, 16}, {});
        CHECK(dx == std::vector<float>{0, 1, 0, 0, 0, 0, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0});
    }
    SECTION("MaxPool2D<3,1> with overlapping windows") {
        MaxPool2D<3, 1>::bind<Shape<1, 4, 4>> pool(1);
        const auto y = run_forward(pool, {}, {}, x, 1);
        CHECK(y == std::vector<float>{9, 9, 9, 9}); // 9 sits in all four windows
        std::vector<float> dx(16, -1.0f);
        pool.backward({}, ConstMatrix{x.data(), 1, 16}, ConstMatrix{y.data(), 1, 4},
                      ConstMatrix{dy.data(), 1, 4}, Matrix{dx.data(), 1, 16}, {});
        std::vector<float> expected(16, 0.0f);
        expected[9] = 1 + 2 + 3 + 4;
        CHECK(dx == expected);
    }
    SECTION("MaxPool2D<2> sends a tied window's gradient to its first maximum, as PyTorch") {
        const std::vector<float> t = {1, 3, 3, 3, 0, 2, 2, 2};
        MaxPool2D<2>::bind<Shape<2, 2, 2>> pool(1);
        const auto y = run_forward(pool, {}, {}, t, 1);
        CHECK(y == std::vector<float>{3, 2});
        std::vector<float> dx(8, -1.0f);
        pool.backward({}, ConstMatrix{t.data(), 1, 8}, ConstMatrix{y.data(), 1, 2},
                      ConstMatrix{dy.data(), 1, 2}, Matrix{dx.data(), 1, 8}, {});
        CHECK(dx == std::vector<float>{0, 1, 0, 0, 0, 2, 0, 0});
    }
    SECTION("MaxPool2D<2,3> on an odd-sized image skips the leftover border") {
        std::vector<float> x5(25);
        std::iota(x5.begin(), x5.end(), 0.0f);
        MaxPool2D<2, 3>::bind<Shape<1, 5, 5>> pool(1);
        CHECK(run_forward(pool, {}, {}, x5, 1) == std::vector<float>{6, 9, 21, 24});
    }
    SECTION("AvgPool2D<2>") {
        AvgPool2D<2>::bind<Shape<1, 4, 4>> pool(1);
        const auto y = run_forward(pool, {}, {}, x, 1);
        CHECK(y == std::vector<float>{13.0f / 4, 16.0f / 4, 10.0f / 4, 8.0f / 4});
        std::vector<float> dx(16, -1.0f);
        pool.backward({}, ConstMatrix{x.data(), 1, 16}, ConstMatrix{y.data(), 1, 4},
                      ConstMatrix{dy.data(), 1, 4}, Matrix{dx.data(), 1, 16}, {});
        CHECK(dx == std::vector<float>{.25f, .25f, .5f, .5f, .25f, .25f, .5f, .5f, .75f, .75f, 1, 1, .75f,
                                       .75f, 1, 1});
    }
    SECTION("AvgPool2D<3,2> with overlapping windows, two channels") {
        std::vector<float> x2(2 * 25);
        std::iota(x2.begin(), x2.end(), 0.0f);
        AvgPool2D<3, 2>::bind<Shape<2, 5, 5>> pool(1);
        // Window means are the centre values (the input is linear in row and column).
        CHECK(run_forward(pool, {}, {}, x2, 1) == std::vector<float>{6, 8, 16, 18, 31, 33, 41, 43});
    }
}

namespace {

/// Finite-difference check of a parameter-free layer's input gradient on given inputs (for max
/// pooling, inputs without near-ties so that no step crosses a kink).
template <class L>
void check_input_gradient_on(const std::vector<float>& x0, std::size_t rows, double h = 1e-3) {
    constexpr std::size_t in = L::input_shape::size, out = L::output_shape::size;
    auto x = x0;
    const auto r = random_values(rows * out, 5);
    L layer(rows);
    std::vector<float> y(rows * out), dx(rows * in);
    auto objective = [&] {
        layer.forward({}, ConstMatrix{x.data(), rows, in}, Matrix{y.data(), rows, out}, {});
        double f = 0;
        for (std::size_t i = 0; i < y.size(); ++i) f += static_cast<double>(y[i]) * r[i];
        return f;
    };
    objective();
    layer.backward({}, ConstMatrix{x.data(), rows, in}, ConstMatrix{y.data(), rows, out},
                   ConstMatrix{r.data(), rows, out}, Matrix{dx.data(), rows, in}, {});
    for (std::size_t i = 0; i < x.size(); ++i) {
        const float orig = x[i];
        x[i] = static_cast<float>(orig + h);
        const double fp = objective();
        x[i] = static_cast<float>(orig - h);
        const double fm = objective();
        x[i] = orig;
        INFO(L::name() << " input " << i);
        CHECK(dx[i] == Approx((fp - fm) / (2 * h)).margin(1e-4));
    }
}

/// Distinct values at least 0.01 apart, shuffled: max pooling has no ties within a step of 1e-3.
std::vector<float> distinct_values(std::size_t n, std::uint64_t seed) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = 0.01f * static_cast<float>(i) - 0.005f * static_cast<float>(n);
    Rng rng(seed, 12);
    for (std::size_t i = n; i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
    return v;
}

} // namespace

TEST_CASE("MaxPool2D<2> matches a naive reference on wide, odd-sized inputs with ties", "[cnn][pool]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    // Widths beyond one and two vectors of outputs, odd heights and widths (a skipped border), and
    // values on a coarse grid so that windows often tie (the first maximum must win).
    const auto check = [](auto tag, std::size_t rows) {
        using L = typename decltype(tag)::type;
        constexpr std::size_t C = L::input_shape::dims[0], H = L::input_shape::dims[1],
                              W = L::input_shape::dims[2];
        constexpr std::size_t OH = H / 2, OW = W / 2, in = L::input_shape::size, out = L::output_shape::size;
        auto x = random_values(rows * in, 21);
        for (auto& v : x) v = std::round(v * 3.0f);
        const auto g = random_values(rows * out, 22);
        L layer(rows);
        std::vector<float> y(rows * out), dx(rows * in, -7.0f);
        layer.forward({}, ConstMatrix{x.data(), rows, in}, Matrix{y.data(), rows, out}, {});
        layer.backward({}, ConstMatrix{x.data(), rows, in}, ConstMatrix{y.data(), rows, out},
                       ConstMatrix{g.data(), rows, out}, Matrix{dx.data(), rows, in}, {});
        std::vector<float> y_ref(rows * out), dx_ref(rows * in, 0.0f);
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t c = 0; c < C; ++c)
                for (std::size_t oh = 0; oh < OH; ++oh)
                    for (std::size_t ow = 0; ow < OW; ++ow) {
                        std::size_t best = r * in + (c * H + 2 * oh) * W + 2 * ow;
                        for (std::size_t kh = 0; kh < 2; ++kh)
                            for (std::size_t kw = 0; kw < 2; ++kw) {
                                const std::size_t at = r * in + (c * H + 2 * oh + kh) * W + 2 * ow + kw;
                                if (x[at] > x[best]) best = at;
                            }
                        const std::size_t o = r * out + (c * OH + oh) * OW + ow;
                        y_ref[o] = x[best];
                        dx_ref[best] += g[o];
                    }
        INFO(L::name() << " on " << L::input_shape::str());
        CHECK(y == y_ref);
        CHECK(dx == dx_ref);
    };
    check(std::type_identity<MaxPool2D<2>::bind<Shape<3, 7, 37>>>{}, 3);
    check(std::type_identity<MaxPool2D<2>::bind<Shape<2, 6, 64>>>{}, 2);
    check(std::type_identity<MaxPool2D<2>::bind<Shape<32, 28, 28>>>{}, 2);
    check(std::type_identity<MaxPool2D<2>::bind<Shape<4, 5, 3>>>{}, 4);
    check(std::type_identity<MaxPool2D<2>::bind<Shape<1, 2, 2>>>{}, 1);
}

TEST_CASE("MaxPool2D<2>'s vector paths give the portable loop's bits, NaN and ReLU included", "[cnn][pool]") {
    // Every instruction set's 2x2 path (max_pool_2x2.ipp) against the portable loop, forward and
    // backward, plain and with the ReLU the pooling runs for the layer before it: the same outputs,
    // winners and input gradients bit for bit. The inputs hold ties, NaN (which never replaces a
    // value, and ReLU keeps) and negative values (whose windows ReLU zeroes). The winners are
    // recorded in one form on every path, so a backward on the portable loop after a vector
    // forward gives the same gradients too.
    PARDL_TEST_EACH_SUPPORTED_ISA();
    const auto check = [](auto tag, std::size_t rows) {
        using L = typename decltype(tag)::type;
        constexpr std::size_t in = L::input_shape::size, out = L::output_shape::size;
        auto x = random_values(rows * in, 31);
        for (std::size_t i = 0; i < x.size(); ++i) {
            x[i] = std::round(x[i] * 3.0f);
            if (i % 7 == 3) x[i] = std::numeric_limits<float>::quiet_NaN();
        }
        const auto g = random_values(rows * out, 32);
        struct Result {
            std::vector<float> y, dx;
        };
        const auto run = [&](bool relu, bool portable_backward = false) {
            L layer(rows);
            Result r{std::vector<float>(rows * out, -3.0f), std::vector<float>(rows * in, -5.0f)};
            const ConstMatrix xm{x.data(), rows, in}, ym{r.y.data(), rows, out}, gm{g.data(), rows, out};
            const Matrix y_out{r.y.data(), rows, out}, dx_out{r.dx.data(), rows, in};
            if (relu)
                layer.forward({}, xm, y_out, {}, FuseRelu{});
            else
                layer.forward({}, xm, y_out, {});
            std::optional<simd::ScopedIsa> scoped;
            if (portable_backward) scoped.emplace(simd::Isa::generic);
            if (relu)
                layer.backward({}, xm, ym, gm, dx_out, {}, FuseRelu{});
            else
                layer.backward({}, xm, ym, gm, dx_out, {});
            return r;
        };
        for (const bool relu : {false, true}) {
            const Result fast = run(relu);
            Result portable;
            {
                const simd::ScopedIsa scoped(simd::Isa::generic);
                portable = run(relu);
            }
            INFO(L::name() << " on " << L::input_shape::str() << (relu ? " with ReLU" : ""));
            CHECK(std::memcmp(fast.y.data(), portable.y.data(), fast.y.size() * sizeof(float)) == 0);
            CHECK(std::memcmp(fast.dx.data(), portable.dx.data(), fast.dx.size() * sizeof(float)) == 0);
            const Result mixed = run(relu, true);
            CHECK(std::memcmp(mixed.dx.data(), portable.dx.data(), mixed.dx.size() * sizeof(float)) == 0);
        }
    };
    check(std::type_identity<MaxPool2D<2>::bind<Shape<3, 7, 37>>>{}, 3);
    check(std::type_identity<MaxPool2D<2>::bind<Shape<32, 28, 28>>>{}, 2);
    check(std::type_identity<MaxPool2D<2>::bind<Shape<64, 14, 14>>>{}, 2);
    check(std::type_identity<MaxPool2D<2>::bind<Shape<2, 6, 64>>>{}, 2);
    check(std::type_identity<MaxPool2D<2>::bind<Shape<5, 9, 19>>>{}, 1);
    check(std::type_identity<MaxPool2D<2>::bind<Shape<1, 2, 2>>>{}, 1);
}

TEST_CASE("Pooling gradients match finite differences", "[cnn][pool][gradcheck]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    check_input_gradient_on<MaxPool2D<2>::bind<Shape<2, 6, 6>>>(distinct_values(2 * 2 * 36, 1), 2);
    check_input_gradient_on<MaxPool2D<2>::bind<Shape<3, 5, 7>>>(distinct_values(2 * 3 * 35, 2), 2);
    check_input_gradient_on<MaxPool2D<3>::bind<Shape<1, 7, 7>>>(distinct_values(3 * 49, 3), 3);
    check_input_gradient_on<MaxPool2D<3, 2>::bind<Shape<2, 7, 6>>>(distinct_values(2 * 2 * 42, 4), 2);
    check_input_gradient_on<MaxPool2D<2, 1>::bind<Shape<1, 5, 4>>>(distinct_values(2 * 20, 5), 2);
    // Average pooling is linear: the generic checker's random inputs are fine.
    require_layer_gradients<AvgPool2D<2>::bind<Shape<2, 6, 6>>>(2);
    require_layer_gradients<AvgPool2D<3>::bind<Shape<1, 7, 8>>>(2);
    require_layer_gradients<AvgPool2D<3, 2>::bind<Shape<2, 7, 5>>>(2);
    require_layer_gradients<AvgPool2D<2, 1>::bind<Shape<1, 5, 5>>>(2);
}

// ---------------------------------------------------------------------------------------------
// BatchNorm

TEST_CASE("BatchNorm gradients match finite differences", "[cnn][batchnorm][gradcheck]") {
    GradcheckOptions o;
    o.step = 1e-3;
    SECTION("training") {
        require_layer_gradients<LocalBatchNorm::bind<Shape<3, 4, 5>>>(4, o);
        require_layer_gradients<SyncBatchNorm::bind<Shape<2, 3, 3>>>(3, o); // no reducer: local sums
        require_layer_gradients<LocalBatchNorm::bind<Shape<6>>>(8, o);
        require_layer_gradients<SyncBatchNorm::bind<Shape<5>>>(5, o);
    }
    SECTION("evaluation") {
        o.training = false;
        require_layer_gradients<SyncBatchNorm::bind<Shape<3, 4, 5>>>(3, o);
        require_layer_gradients<LocalBatchNorm::bind<Shape<6>>>(4, o);
    }
}

TEST_CASE("BatchNorm normalises per channel and tracks running statistics", "[cnn][batchnorm]") {
    using L = SyncBatchNorm::bind<Shape<3, 4, 5>>;
    constexpr std::size_t rows = 6, spatial = 20, C = 3;
    std::vector<float> params(L::param_count), state(L::state_count);
    Rng rng(1, 0);
    L::initialize(params, state, rng);
    CHECK(params == std::vector<float>{1, 1, 1, 0, 0, 0});
    CHECK(state == std::vector<float>{0, 0, 0, 1, 1, 1});
    // Channels with different offsets and spreads.
    auto x = random_values(rows * L::input_shape::size, 6);
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t p = 0; p < spatial; ++p) {
                float& v = x[r * 60 + c * spatial + p];
                v = static_cast<float>(c + 1) * 2.0f * v + 3.0f * static_cast<float>(c);
            }
    L layer(rows);
    const auto y = run_forward(layer, params, state, x, rows);
    for (std::size_t c = 0; c < C; ++c) {
        double sx = 0, sxx = 0, sy = 0, syy = 0;
        const double n = rows * spatial;
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t p = 0; p < spatial; ++p) {
                const double xv = x[r * 60 + c * spatial + p], yv = y[r * 60 + c * spatial + p];
                sx += xv;
                sxx += xv * xv;
                sy += yv;
                syy += yv * yv;
            }
        const double mean = sx / n, var = sxx / n - mean * mean;
        INFO("channel " << c);
        CHECK(std::abs(sy / n) < 1e-5);
        CHECK(syy / n == Approx(var / (var + 1e-5)).epsilon(1e-5));
        CHECK(state[c] == Approx(0.1 * mean).epsilon(1e-5));
        CHECK(state[C + c] == Approx(0.9 + 0.1 * var * n / (n - 1)).epsilon(1e-5));
    }

    SECTION("evaluation uses the running statistics and affine parameters") {
        std::vector<float> p2 = {2.0f, 0.5f, -1.0f, 0.25f, -3.0f, 1.0f};
        std::vector<float> s2 = {0.5f, -1.0f, 2.0f, 4.0f, 0.25f, 9.0f};
        const auto s_before = s2;
        StepContext eval;
        eval.training = false;
        const auto ye = run_forward(layer, p2, s2, x, rows, eval);
        CHECK(s2 == s_before); // evaluation never writes state
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t c = 0; c < C; ++c)
                for (std::size_t p = 0; p < spatial; ++p) {
                    const std::size_t i = r * 60 + c * spatial + p;
                    const double ref = p2[c] * (x[i] - s2[c]) / std::sqrt(s2[C + c] + 1e-5) + p2[C + c];
                    CHECK(ye[i] == Approx(ref).epsilon(1e-5).margin(1e-5));
                }
    }
    SECTION("only the worker with updates_state writes running statistics") {
        std::vector<float> s2 = {0, 0, 0, 1, 1, 1};
        StepContext ctx;
        ctx.updates_state = false;
        run_forward(layer, params, s2, x, rows, ctx);
        CHECK(s2 == std::vector<float>{0, 0, 0, 1, 1, 1});
    }
    SECTION("rank-1 inputs are normalised per feature") {
        using F = LocalBatchNorm::bind<Shape<4>>;
        std::vector<float> pf = {1, 1, 1, 1, 0, 0, 0, 0}, sf = {0, 0, 0, 0, 1, 1, 1, 1};
        const auto xf = random_values(10 * 4, 8, -3.0f, 5.0f);
        F f(10);
        const auto yf = run_forward(f, pf, sf, xf, 10);
        for (std::size_t j = 0; j < 4; ++j) {
            double s = 0, ss = 0;
            for (std::size_t r = 0; r < 10; ++r) {
                s += yf[r * 4 + j];
                ss += static_cast<double>(yf[r * 4 + j]) * yf[r * 4 + j];
            }
            CHECK(std::abs(s / 10) < 1e-5);
            CHECK(ss / 10 == Approx(1.0).epsilon(1e-3));
        }
    }
}

namespace {

/// A stand-in for the executor's reducer: workers deposit their values, wait for each other, and
/// all add the deposits in the same fixed order.
class FakeReducerHub {
public:
    explicit FakeReducerHub(std::size_t workers)
        : barrier_(static_cast<std::ptrdiff_t>(workers)), deposits_(workers) {}

    class Handle final : public WorkerReducer {
    public:
        Handle(FakeReducerHub& hub, std::size_t id) : hub_(&hub), id_(id) {}
        void sum(std::span<double> values) override {
            ++calls;
            hub_->deposits_[id_].assign(values.begin(), values.end());
            hub_->barrier_.arrive_and_wait();
            for (std::size_t i = 0; i < values.size(); ++i) {
                double s = 0;
                for (const auto& d : hub_->deposits_) s += d.at(i);
                values[i] = s;
            }
            hub_->barrier_.arrive_and_wait(); // nobody deposits again before all have read
        }
        int calls = 0;

    private:
        FakeReducerHub* hub_;
        std::size_t id_;
    };

private:
    std::barrier<> barrier_;
    std::vector<std::vector<double>> deposits_;
};

struct BnRun {
    std::vector<float> y, dx, grads, state;
    int reducer_calls = 0;
};

/// Forward and backward of batch norm layer L over `rows` rows split at `split` between two
/// workers (two threads, each with its own layer instance), or on one worker if split == rows.
template <class L>
std::pair<BnRun, BnRun> run_split(const std::vector<float>& params, const std::vector<float>& x,
                                  const std::vector<float>& dy, std::size_t rows, std::size_t split) {
    constexpr std::size_t w = L::input_shape::size;
    FakeReducerHub hub(2);
    BnRun runs[2];
    const std::size_t first[2] = {0, split}, count[2] = {split, rows - split};
    auto worker = [&](std::size_t id) {
        FakeReducerHub::Handle reducer(hub, id);
        BnRun& out = runs[id];
        out.y.assign(count[id] * w, 0.0f);
        out.dx.assign(count[id] * w, 0.0f);
        out.grads.assign(L::param_count, 0.0f);
        out.state = {};
        out.state.resize(L::state_count);
        Rng rng(0);
        std::vector<float> unused(L::param_count);
        L::initialize(unused, out.state, rng);
        StepContext ctx;
        ctx.first_row = first[id];
        ctx.global_rows = rows;
        ctx.reducer = &reducer;
        ctx.updates_state = id == 0;
        L layer(std::max<std::size_t>(count[id], 1));
        const LayerSlots slots{params, out.grads, out.state};
        const ConstMatrix xs{x.data() + first[id] * w, count[id], w};
        layer.forward(slots, xs, Matrix{out.y.data(), count[id], w}, ctx);
        layer.backward(slots, xs, ConstMatrix{out.y.data(), count[id], w},
                       ConstMatrix{dy.data() + first[id] * w, count[id], w},
                       Matrix{out.dx.data(), count[id], w}, ctx);
        out.reducer_calls = reducer.calls;
    };
    std::thread t1(worker, 1);
    worker(0);
    t1.join();
    return {runs[0], runs[1]};
}

template <class L>
BnRun run_whole(const std::vector<float>& params, const std::vector<float>& x, const std::vector<float>& dy,
                std::size_t rows) {
    constexpr std::size_t w = L::input_shape::size;
    BnRun out;
    out.y.assign(rows * w, 0.0f);
    out.dx.assign(rows * w, 0.0f);
    out.grads.assign(L::param_count, 0.0f);
    out.state.resize(L::state_count);
    Rng rng(0);
    std::vector<float> unused(L::param_count);
    L::initialize(unused, out.state, rng);
    L layer(rows);
    const LayerSlots slots{params, out.grads, out.state};
    StepContext ctx;
    ctx.global_rows = rows;
    layer.forward(slots, ConstMatrix{x.data(), rows, w}, Matrix{out.y.data(), rows, w}, ctx);
    layer.backward(slots, ConstMatrix{x.data(), rows, w}, ConstMatrix{out.y.data(), rows, w},
                   ConstMatrix{dy.data(), rows, w}, Matrix{out.dx.data(), rows, w}, ctx);
    return out;
}

std::vector<float> concat(const std::vector<float>& a, const std::vector<float>& b) {
    auto v = a;
    v.insert(v.end(), b.begin(), b.end());
    return v;
}

template <template <BatchNormMode> class BN, class In>
void check_sync_batch_norm(std::size_t rows, std::size_t split) {
    using Sync = typename BN<BatchNormMode::synchronized>::template bind<In>;
    using Local = typename BN<BatchNormMode::local>::template bind<In>;
    const auto x = random_values(rows * In::size, 21, -2.0f, 3.0f);
    const auto dy = random_values(rows * In::size, 22);
    auto params = random_values(Sync::param_count, 23, 0.5f, 1.5f);
    const BnRun whole = run_whole<Sync>(params, x, dy, rows);
    INFO(In::str() << ", " << rows << " rows split at " << split);

    const auto [a, b] = run_split<Sync>(params, x, dy, rows, split);
    CHECK(a.reducer_calls == 2);
    CHECK(b.reducer_calls == 2);
    CHECK(max_rel_diff(concat(a.y, b.y), whole.y) <= 1e-5);
    CHECK(max_rel_diff(concat(a.dx, b.dx), whole.dx) <= 1e-5);
    std::vector<float> grad_sum(whole.grads.size());
    for (std::size_t i = 0; i < grad_sum.size(); ++i) grad_sum[i] = a.grads[i] + b.grads[i];
    CHECK(max_rel_diff(grad_sum, whole.grads) <= 1e-5);
    CHECK(max_rel_diff(a.state, whole.state) <= 1e-5); // worker 0 wrote the global statistics
    std::vector<float> initial(Sync::state_count), unused(Sync::param_count);
    Rng rng(0);
    Sync::initialize(unused, initial, rng);
    CHECK(b.state == initial); // worker 1 left its state alone

    if (split == 0 || split == rows) return; // local mode equals global when one worker has everything
    const auto [la, lb] = run_split<Local>(params, x, dy, rows, split);
    CHECK(la.reducer_calls == 0);
    CHECK(lb.reducer_calls == 0);
    CHECK(max_rel_diff(concat(la.y, lb.y), whole.y) > 1e-3);
    CHECK(max_rel_diff(concat(la.dx, lb.dx), whole.dx) > 1e-3);
}

} // namespace

TEST_CASE("Synchronized BatchNorm over two workers equals the whole batch", "[cnn][batchnorm][sync]") {
    check_sync_batch_norm<BatchNorm, Shape<3, 4, 5>>(10, 6);
    check_sync_batch_norm<BatchNorm, Shape<3, 4, 5>>(7, 3);
    check_sync_batch_norm<BatchNorm, Shape<2, 3, 3>>(5, 5); // the second worker has no rows
    check_sync_batch_norm<BatchNorm, Shape<2, 3, 3>>(5, 0); // the first worker has no rows
    check_sync_batch_norm<BatchNorm, Shape<6>>(9, 4);
}

// ---------------------------------------------------------------------------------------------
// Dropout

TEST_CASE("Dropout keeps 1 - p of the elements, scaled, with a partition-independent mask",
          "[cnn][dropout]") {
    using L = Dropout<300>::bind<Shape<10, 10>>;
    constexpr std::size_t rows = 100, w = 100;
    auto x = random_values(rows * w, 31, 0.5f, 1.0f); // no zeros: a zero output means dropped
    StepContext ctx;
    ctx.seed = 42;
    ctx.step = 3;
    ctx.global_rows = rows;
    L layer(rows);
    const auto y = run_forward(layer, {}, {}, x, rows, ctx);
    std::size_t kept = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
        if (y[i] == 0.0f) continue;
        ++kept;
        REQUIRE(y[i] == x[i] * Dropout<300>::scale);
    }
    CHECK(static_cast<double>(kept) / static_cast<double>(y.size()) == Approx(0.7).margin(0.015));

    SECTION("the mask depends on (seed, step, global row, element) only") {
        constexpr std::size_t split = 37;
        StepContext second = ctx;
        second.first_row = split;
        L l1(split), l2(rows - split);
        const std::vector<float> x1(x.begin(), x.begin() + split * w), x2(x.begin() + split * w, x.end());
        CHECK(concat(run_forward(l1, {}, {}, x1, split, ctx),
                     run_forward(l2, {}, {}, x2, rows - split, second)) == y);
        StepContext next = ctx;
        next.step = 4;
        CHECK(run_forward(layer, {}, {}, x, rows, next) != y);
        StepContext reseeded = ctx;
        reseeded.seed = 43;
        CHECK(run_forward(layer, {}, {}, x, rows, reseeded) != y);
    }
    SECTION("backward applies the forward mask") {
        const auto dy = random_values(rows * w, 32, 0.5f, 1.0f);
        std::vector<float> dx(rows * w);
        layer.backward({}, ConstMatrix{x.data(), rows, w}, ConstMatrix{y.data(), rows, w},
                       ConstMatrix{dy.data(), rows, w}, Matrix{dx.data(), rows, w}, ctx);
        for (std::size_t i = 0; i < dx.size(); ++i)
            REQUIRE(dx[i] == (y[i] == 0.0f ? 0.0f : dy[i] * Dropout<300>::scale));
    }
    SECTION("evaluation is the identity") {
        StepContext eval = ctx;
        eval.training = false;
        CHECK(run_forward(layer, {}, {}, x, rows, eval) == x);
        std::vector<float> dx(rows * w);
        layer.backward({}, ConstMatrix{x.data(), rows, w}, ConstMatrix{x.data(), rows, w},
                       ConstMatrix{x.data(), rows, w}, Matrix{dx.data(), rows, w}, eval);
        CHECK(dx == x);
    }
}

TEST_CASE("Dropout gradients match finite differences", "[cnn][dropout][gradcheck]") {
    require_layer_gradients<Dropout<300>::bind<Shape<20>>>(4);
    require_layer_gradients<Dropout<500>::bind<Shape<2, 3, 3>>>(3);
    require_layer_gradients<Dropout<0>::bind<Shape<7>>>(2);
}

// ---------------------------------------------------------------------------------------------
// Whole models and empty batches

TEST_CASE("Small CNNs pass an end-to-end gradient check", "[cnn][gradcheck][model]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    GradcheckOptions o;
    o.step = 1e-3;
    SECTION("conv, relu, max pool, dense") {
        using Net = Sequential<Input<1, 6, 6>, Conv2D<2, 3, 1, 1>, ReLU, MaxPool2D<2>, Flatten, Dense<3>>;
        const auto report = check_model<Net, SoftmaxCrossEntropy>(4, o);
        INFO(report.summary());
        CHECK(report.ok);
    }
    SECTION("two conv-relu pairs: fused forward and backward, the second with an input gradient") {
        using Net = Sequential<Input<1, 6, 6>, Conv2D<2, 3, 1, 1>, ReLU, Conv2D<3, 3, 1, 1>, ReLU,
                               MaxPool2D<2>, Flatten, Dense<3>>;
        STATIC_REQUIRE(Net::fused[1] && Net::fused[3]);
        const auto report = check_model<Net, SoftmaxCrossEntropy>(4, o);
        INFO(report.summary());
        CHECK(report.ok);
    }
    SECTION("with batch norm, average pooling and dropout") {
        using Net = Sequential<Input<2, 5, 5>, Conv2D<3, 3, 1, 1>, BatchNorm<>, ReLU, AvgPool2D<2>, Flatten,
                               Dense<6>, LocalBatchNorm, Dropout<250>, Dense<3>>;
        const auto report = check_model<Net, SoftmaxCrossEntropy>(5, o);
        INFO(report.summary());
        CHECK(report.ok);
    }
}

namespace {

template <class L>
void run_empty_batch(const StepContext& ctx) {
    std::vector<float> params(L::param_count + 1), grads(L::param_count + 1, 0.0f), state(L::state_count + 1);
    Rng rng(1);
    L::initialize(std::span<float>(params).first(L::param_count),
                  std::span<float>(state).first(L::state_count), rng);
    const auto state_before = state;
    float dummy = 0.0f;
    L layer(0);
    const LayerSlots slots{std::span<const float>(params).first(L::param_count),
                           std::span<float>(grads).first(L::param_count),
                           std::span<float>(state).first(L::state_count)};
    layer.forward(slots, ConstMatrix{&dummy, 0, L::input_shape::size},
                  Matrix{&dummy, 0, L::output_shape::size}, ctx);
    layer.backward(
        slots, ConstMatrix{&dummy, 0, L::input_shape::size}, ConstMatrix{&dummy, 0, L::output_shape::size},
        ConstMatrix{&dummy, 0, L::output_shape::size}, Matrix{&dummy, 0, L::input_shape::size}, ctx);
    CHECK(std::all_of(grads.begin(), grads.end(), [](float g) { return g == 0.0f; }));
    CHECK(state == state_before); // no rows anywhere: no statistics to record
    CHECK(dummy == 0.0f);
}

} // namespace

TEST_CASE("CNN layers accept batches of zero rows", "[cnn]") {
    for (const bool training : {true, false}) {
        StepContext ctx;
        ctx.training = training;
        run_empty_batch<Conv2D<3, 3, 1, 1>::bind<Shape<2, 5, 5>>>(ctx);
        run_empty_batch<Conv2D<3, 1>::bind<Shape<2, 5, 5>>>(ctx);
        run_empty_batch<MaxPool2D<2>::bind<Shape<2, 5, 5>>>(ctx);
        run_empty_batch<AvgPool2D<2>::bind<Shape<2, 5, 5>>>(ctx);
        run_empty_batch<SyncBatchNorm::bind<Shape<2, 5, 5>>>(ctx);
        run_empty_batch<LocalBatchNorm::bind<Shape<7>>>(ctx);
        run_empty_batch<Dropout<500>::bind<Shape<2, 5, 5>>>(ctx);
    }
}

namespace {
/// Net's forward outputs (those kept whole: not output_is_block_local), parameter gradients (over
/// stale values, overwriting or adding) and input gradient for `rows` random rows, with the
/// row-wise prefix run `block` rows at a time (0: the whole batch at once); and whether
/// Workspace::output gave the block-local outputs (it should only when the batch was one block).
template <class Net>
struct BlockedPasses {
    std::vector<float> outputs, grads_written, grads_added, dx;
    bool local_outputs_given = false;

    BlockedPasses(std::size_t rows, std::size_t block) {
        constexpr std::size_t in_size = Net::input_shape::size, out = Net::output_shape::size;
        const auto params = random_values(Net::param_count, 21);
        const auto x = random_values(rows * in_size, 22);
        const auto dy = random_values(rows * out, 23);
        typename Net::Workspace ws(std::max<std::size_t>(rows, 1));
        ws.set_block_rows(block);
        const ConstMatrix in{x.data(), rows, in_size};
        const auto pass = [&](bool overwrite, float stale) {
            Net::forward(params, {}, in, ws, StepContext{});
            for (std::size_t i = 0; i < Net::layer_count; ++i) {
                const ConstMatrix y = ws.output(i);
                if (Net::output_is_block_local(i))
                    local_outputs_given = local_outputs_given || !y.empty();
                else
                    outputs.insert(outputs.end(), y.data, y.data + y.rows * y.cols);
            }
            std::copy(dy.begin(), dy.end(), ws.output_gradient().data);
            std::vector<float> grads(Net::param_count, stale);
            dx.assign(rows * in_size, 0.0f);
            StepContext ctx;
            ctx.overwrite_grads = overwrite;
            Net::backward(params, grads, {}, in, ws, ctx, Matrix{dx.data(), rows, in_size});
            return grads;
        };
        grads_written = pass(true, std::numeric_limits<float>::quiet_NaN());
        grads_added = pass(false, 0.5f);
    }
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
} // namespace

TEST_CASE("Sequential runs its row-wise layers block by block with the bits of whole batches",
          "[cnn][model][blocks]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    // Conv (one channel: weight gradient accumulated transposed) - ReLU - MaxPool - Conv (16
    // channels: channels-last backward) - ReLU - MaxPool - Flatten, then Dense layers: the first 7
    // layers are row-wise. And a strided convolution with a Tanh and an average pooling.
    using Cnn = Sequential<Input<1, 12, 12>, Conv2D<16, 3, 1, 1>, ReLU, MaxPool2D<2>, Conv2D<8, 3, 1, 1>,
                           ReLU, MaxPool2D<2>, Flatten, Dense<5>, ReLU, Dense<3>>;
    using Strided = Sequential<Input<2, 7, 9>, Conv2D<3, 3, 2, 1>, Tanh, AvgPool2D<2>, Flatten, Dense<4>>;
    STATIC_REQUIRE(Cnn::row_wise_prefix == 7);
    STATIC_REQUIRE(Strided::row_wise_prefix == 4);
    // Layers that need the whole batch (batch norm, dropout) or do not work row by row (Dense)
    // end the prefix; a ReLU the convolution runs stays with it.
    STATIC_REQUIRE(
        Sequential<Input<1, 6, 6>, Conv2D<2, 3>, BatchNorm<>, ReLU, Flatten, Dense<2>>::row_wise_prefix == 1);
    STATIC_REQUIRE(Sequential<Input<1, 6, 6>, Conv2D<2, 3>, ReLU, Flatten, Dense<2>>::row_wise_prefix == 3);
    STATIC_REQUIRE(Sequential<Input<8>, Dense<4>, ReLU, Dense<2>>::row_wise_prefix == 0);
    // W-CNN's first convolution writes 100 KB a row: blocks of 2 rows.
    using Wcnn = Sequential<Input<1, 28, 28>, Conv2D<32, 3, 1, 1>, ReLU, MaxPool2D<2>, Conv2D<64, 3, 1, 1>,
                            ReLU, MaxPool2D<2>, Flatten, Dense<256>, ReLU, Dense<10>>;
    STATIC_REQUIRE(Wcnn::row_wise_prefix == 7 && Wcnn::block_rows == 2);
    // Past the prefix the widest gradient is Flatten's output, 64 x 7 x 7 floats a row.
    STATIC_REQUIRE(Wcnn::gradient_width == 3136);
    // Outputs that only the next layer's forward reads live in one block's buffer: the
    // convolutions' (and the ReLUs' that the poolings run, which share them) and, in Strided, the
    // average pooling's. Pooling outputs stay whole (their fused ReLU's mask, the next
    // convolution's input), as do the prefix's last output and everything past it.
    constexpr auto local_layers = [](auto model_tag) {
        using Net = typename decltype(model_tag)::type;
        std::vector<std::size_t> v;
        for (std::size_t i = 0; i < Net::layer_count; ++i)
            if (Net::output_is_block_local(i)) v.push_back(i);
        return v;
    };
    CHECK(local_layers(std::type_identity<Wcnn>{}) == std::vector<std::size_t>{0, 1, 3, 4});
    CHECK(local_layers(std::type_identity<Cnn>{}) == std::vector<std::size_t>{0, 1, 3, 4});
    // The strided convolution's output feeds a Tanh, whose backward reads only its own output.
    CHECK(local_layers(std::type_identity<Strided>{}) == std::vector<std::size_t>{0, 2});
    // A layer that declares nothing is taken to read both (a user's layer keeps working as it did).
    struct DeclaresNothing {};
    STATIC_REQUIRE(backward_reads_input_v<DeclaresNothing> && backward_reads_output_v<DeclaresNothing>);
    STATIC_REQUIRE(backward_reads_input_v<Dense<2>::bind<Shape<3>>>);
    STATIC_REQUIRE(!backward_reads_output_v<Dense<2>::bind<Shape<3>>>);
    STATIC_REQUIRE(!backward_reads_input_v<MaxPool2D<2>::bind<Shape<1, 4, 4>>>);
    // A convolution whose output the next one reads in its backward (as its input), or that runs
    // the ReLU after it (the mask), keeps it whole.
    STATIC_REQUIRE(
        !Sequential<Input<1, 8, 8>, Conv2D<2, 3>, Conv2D<2, 3>, Flatten, Dense<2>>::block_local[0]);
    STATIC_REQUIRE(
        !Sequential<Input<1, 8, 8>, Conv2D<2, 3>, ReLU, Conv2D<2, 3>, Flatten, Dense<2>>::block_local[0]);

    const auto check = [](auto model_tag) {
        using Net = typename decltype(model_tag)::type;
        const std::size_t rows = 7;
        const BlockedPasses<Net> whole(rows, 0);
        for (const std::size_t block : {1, 2, 3, 6, 7, 100}) {
            INFO("blocks of " << block << " rows");
            const BlockedPasses<Net> blocked(rows, block);
            CHECK(same_bits(blocked.outputs, whole.outputs));
            CHECK(same_bits(blocked.grads_written, whole.grads_written));
            CHECK(same_bits(blocked.grads_added, whole.grads_added));
            CHECK(same_bits(blocked.dx, whole.dx));
            CHECK(blocked.local_outputs_given == (block >= rows));
        }
        CHECK(whole.local_outputs_given);
        // The comparisons are not between zeros, and overwriting differs from adding to 0.5.
        CHECK(std::count(whole.dx.begin(), whole.dx.end(), 0.0f) <
              static_cast<std::ptrdiff_t>(whole.dx.size() / 2));
        CHECK(!same_bits(whole.grads_written, whole.grads_added));
        // An empty batch still overwrites every gradient (with zeros).
        const BlockedPasses<Net> empty(0, 2);
        CHECK(std::all_of(empty.grads_written.begin(), empty.grads_written.end(),
                          [](float g) { return g == 0.0f; }));
    };
    check(std::type_identity<Cnn>{});
    check(std::type_identity<Strided>{});
}
