// Layers: finite-difference gradient checks of every layer (and proof that the checker catches
// wrong gradients), forward and backward values against hand-worked and double-precision
// references, and the initialisers' statistics against their formulas.
#include "pardl/layers/dense.hpp"
#include "pardl/layers/flatten.hpp"
#include "pardl/layers/relu.hpp"
#include "pardl/layers/sigmoid.hpp"
#include "pardl/layers/tanh.hpp"
#include "pardl/tensor/buffer.hpp"
#include "pardl/tensor/init.hpp"
#include "pardl/testing/gradcheck.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

namespace {

using pardl::ConstMatrix;
using pardl::LayerSlots;
using pardl::Matrix;
using pardl::Shape;
using pardl::StepContext;
using std::size_t;
namespace pt = pardl::testing;

template <class L>
void require_gradcheck(size_t rows) {
    const pt::GradcheckReport report = pt::check_layer<L>(rows);
    INFO(L::name() << " on " << L::input_shape::str() << ", " << rows << " rows: " << report.summary());
    REQUIRE(report.checked > 0);
    REQUIRE(report.ok);
}

// --- deliberately wrong layers, to show the checker can fail ---

/// Tanh whose backward returns twice the right input gradient.
struct DoubledTanhFn {
    static float value(float x) { return std::tanh(x); }
    static float derivative_from_output(float y) { return 2.0f * (1.0f - y * y); }
    static std::string name() { return "DoubledTanh"; }
};
using DoubledTanh = pardl::Activation<DoubledTanhFn>;

/// Sigmoid whose derivative uses the wrong formula y * (1 + y) (a plausible sign slip).
struct SlippedSigmoidFn {
    static float value(float x) { return pardl::detail::SigmoidFn::value(x); }
    static float derivative_from_output(float y) { return y * (1.0f + y); }
    static std::string name() { return "SlippedSigmoid"; }
};
using SlippedSigmoid = pardl::Activation<SlippedSigmoidFn>;

/// Dense whose backward forgets the bias gradient (weights and input gradient are right).
template <size_t Out, size_t In>
struct ForgetsBiasDense : pardl::Dense<Out>::template bind<Shape<In>> {
    using Base = typename pardl::Dense<Out>::template bind<Shape<In>>;
    using Base::Base;
    void backward(const LayerSlots& s, ConstMatrix x, ConstMatrix y, ConstMatrix dy, Matrix dx,
                  const StepContext& ctx) {
        std::vector<float> bias(s.grads.begin() + Base::weight_count, s.grads.end());
        Base::backward(s, x, y, dy, dx, ctx);
        std::copy(bias.begin(), bias.end(), s.grads.begin() + Base::weight_count);
    }
};

/// Dense whose weight gradient is transposed-indexed (x^T dy stored as [out][in]): only wrong
/// when in != out, the kind of layout slip the checker must catch.
template <size_t Out, size_t In>
struct TransposedGradDense : pardl::Dense<Out>::template bind<Shape<In>> {
    using Base = typename pardl::Dense<Out>::template bind<Shape<In>>;
    using Base::Base;
    void backward(const LayerSlots& s, ConstMatrix x, ConstMatrix y, ConstMatrix dy, Matrix dx,
                  const StepContext& ctx) {
        std::vector<float> before(s.grads.begin(), s.grads.end());
        Base::backward(s, x, y, dy, dx, ctx);
        std::vector<float> dw(s.grads.begin(), s.grads.begin() + Base::weight_count);
        for (size_t i = 0; i < In; ++i)
            for (size_t j = 0; j < Out; ++j)
                s.grads[j * In + i] = before[j * In + i] + (dw[i * Out + j] - before[i * Out + j]);
    }
};

StepContext ctx_train() {
    return StepContext{};
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Gradient checks

TEST_CASE("gradcheck: Dense for several input/output sizes", "[layers][gradcheck][dense]") {
    using pardl::Dense;
    require_gradcheck<Dense<1>::bind<Shape<1>>>(3);
    require_gradcheck<Dense<1>::bind<Shape<9>>>(4);
    require_gradcheck<Dense<7>::bind<Shape<1>>>(2);
    require_gradcheck<Dense<5>::bind<Shape<7>>>(1);
    require_gradcheck<Dense<13>::bind<Shape<17>>>(5);
    require_gradcheck<Dense<33>::bind<Shape<29>>>(6); // spans several GEMM micro-tiles
    require_gradcheck<Dense<10>::bind<Shape<64>>>(9);
}

TEST_CASE("gradcheck: Dense with XavierUniform init", "[layers][gradcheck][dense]") {
    using pardl::Dense;
    using pardl::XavierUniform;
    require_gradcheck<Dense<6, XavierUniform>::bind<Shape<11>>>(4);
    require_gradcheck<Dense<1, XavierUniform>::bind<Shape<3>>>(2);
}

TEST_CASE("gradcheck: activations on vectors and images", "[layers][gradcheck][activation]") {
    require_gradcheck<pardl::ReLU::bind<Shape<13>>>(3);
    require_gradcheck<pardl::ReLU::bind<Shape<2, 3, 5>>>(2);
    require_gradcheck<pardl::Sigmoid::bind<Shape<13>>>(3);
    require_gradcheck<pardl::Sigmoid::bind<Shape<2, 3, 5>>>(2);
    require_gradcheck<pardl::Tanh::bind<Shape<13>>>(3);
    require_gradcheck<pardl::Tanh::bind<Shape<2, 3, 5>>>(2);
}

TEST_CASE("gradcheck: Flatten", "[layers][gradcheck][flatten]") {
    using F = pardl::Flatten::bind<Shape<3, 4, 5>>;
    STATIC_REQUIRE(std::is_same_v<F::output_shape, Shape<60>>);
    require_gradcheck<F>(3);
}

TEST_CASE("gradcheck fails for layers with wrong gradients", "[layers][gradcheck][negative]") {
    SECTION("input gradient twice too large") {
        const auto report = pt::check_layer<DoubledTanh::bind<Shape<13>>>(3);
        INFO(report.summary());
        REQUIRE(!report.ok);
        CHECK(report.max_error > 1.0);
        CHECK(report.failures.find("input[") != std::string::npos);
    }
    SECTION("wrong activation derivative formula") {
        const auto report = pt::check_layer<SlippedSigmoid::bind<Shape<2, 3, 5>>>(2);
        INFO(report.summary());
        REQUIRE(!report.ok);
    }
    SECTION("bias gradient missing") {
        const auto report = pt::check_layer<ForgetsBiasDense<4, 3>>(5);
        INFO(report.summary());
        REQUIRE(!report.ok);
        // The inputs are right; only parameters fail.
        CHECK(report.failures.find("param[") != std::string::npos);
        CHECK(report.failures.find("input[") == std::string::npos);
    }
    SECTION("weight gradient stored in the wrong layout") {
        const auto report = pt::check_layer<TransposedGradDense<3, 5>>(4);
        INFO(report.summary());
        REQUIRE(!report.ok);
    }
}

// ---------------------------------------------------------------------------------------------
// Dense values

TEST_CASE("Dense forward computes x W + b (W stored in-major, bias after the weights)", "[layers][dense]") {
    using L = pardl::Dense<2>::bind<Shape<3>>;
    STATIC_REQUIRE(L::param_count == 3 * 2 + 2);
    STATIC_REQUIRE(L::weight_count == 6);
    STATIC_REQUIRE(std::is_same_v<L::output_shape, Shape<2>>);
    // W = [[1, 2], [3, 4], [5, 6]] (rows = inputs), b = [0.5, -1].
    const float params[] = {1, 2, 3, 4, 5, 6, 0.5f, -1};
    const float x[] = {1, 0, -1, /* row 2 */ 2, 1, 0.5f};
    float y[4] = {99, 99, 99, 99};
    L layer(2);
    layer.forward(LayerSlots{params, {}, {}}, ConstMatrix{x, 2, 3}, Matrix{y, 2, 2}, ctx_train());
    // Row 1: [1 - 5, 2 - 6] + b = [-3.5, -5]; row 2: [2 + 3 + 2.5, 4 + 4 + 3] + b = [8, 10].
    CHECK(y[0] == -3.5f);
    CHECK(y[1] == -5.0f);
    CHECK(y[2] == 8.0f);
    CHECK(y[3] == 10.0f);
}

TEST_CASE("Dense backward: dW = x^T dy, db = sum dy, dx = dy W^T, and gradients accumulate",
          "[layers][dense]") {
    using L = pardl::Dense<2>::bind<Shape<3>>;
    const float params[] = {1, 2, 3, 4, 5, 6, 0.5f, -1};
    const float x[] = {1, 0, -1, 2, 1, 0.5f};
    const float dy[] = {1, -1, 0.5f, 2};
    float y[4];
    float grads[8] = {};
    float dx[6] = {99, 99, 99, 99, 99, 99};
    L layer(2);
    const LayerSlots slots{params, grads, {}};
    layer.forward(slots, ConstMatrix{x, 2, 3}, Matrix{y, 2, 2}, ctx_train());
    layer.backward(slots, ConstMatrix{x, 2, 3}, ConstMatrix{y, 2, 2}, ConstMatrix{dy, 2, 2}, Matrix{dx, 2, 3},
                   ctx_train());
    // dW[i][j] = sum_r x[r][i] dy[r][j]
    //   i=0: 1*1 + 2*0.5 = 2,      1*-1 + 2*2 = 3
    //   i=1: 0*1 + 1*0.5 = 0.5,    0*-1 + 1*2 = 2
    //   i=2: -1*1 + 0.5*0.5 = -.75, -1*-1 + 0.5*2 = 2
    // db = [1.5, 1]
    const float expect_grads[] = {2, 3, 0.5f, 2, -0.75f, 2, 1.5f, 1};
    for (int k = 0; k < 8; ++k) CHECK(grads[k] == Approx(expect_grads[k]).margin(1e-6));
    // dx[r][i] = sum_j dy[r][j] W[i][j]
    //   r=0: [1-2, 3-4, 5-6] = [-1, -1, -1]; r=1: [0.5+4, 1.5+8, 2.5+12] = [4.5, 9.5, 14.5]
    const float expect_dx[] = {-1, -1, -1, 4.5f, 9.5f, 14.5f};
    for (int k = 0; k < 6; ++k) CHECK(dx[k] == Approx(expect_dx[k]).margin(1e-6));

    // A second backward ADDS to the parameter gradients; an empty dx is skipped.
    layer.backward(slots, ConstMatrix{x, 2, 3}, ConstMatrix{y, 2, 2}, ConstMatrix{dy, 2, 2}, Matrix{},
                   ctx_train());
    for (int k = 0; k < 8; ++k) CHECK(grads[k] == Approx(2 * expect_grads[k]).margin(1e-6));
}

TEST_CASE("Dense forward matches a double-precision reference on odd sizes", "[layers][dense]") {
    constexpr size_t in = 29, out = 23, rows = 37;
    using L = pardl::Dense<out>::bind<Shape<in>>;
    pardl::Rng rng(99);
    std::vector<float> params(L::param_count), x(rows * in), y(rows * out);
    for (float& v : params) v = rng.uniform(-1, 1);
    for (float& v : x) v = rng.uniform(-1, 1);
    L layer(rows);
    layer.forward(LayerSlots{params, {}, {}}, ConstMatrix{x.data(), rows, in}, Matrix{y.data(), rows, out},
                  ctx_train());
    double worst = 0;
    for (size_t r = 0; r < rows; ++r)
        for (size_t j = 0; j < out; ++j) {
            double ref = params[in * out + j];
            for (size_t i = 0; i < in; ++i) ref += double(x[r * in + i]) * params[i * out + j];
            worst = std::max(worst, std::abs(ref - y[r * out + j]));
        }
    CHECK(worst < 1e-4);
}

TEST_CASE("Dense initialize: weights from the initialiser, biases zero", "[layers][dense][init]") {
    using L = pardl::Dense<8, pardl::XavierUniform>::bind<Shape<12>>;
    std::vector<float> params(L::param_count, 7.0f);
    pardl::Rng rng(3);
    L::initialize(params, {}, rng);
    const float bound = std::sqrt(6.0f / (12 + 8));
    for (size_t k = 0; k < L::weight_count; ++k) {
        REQUIRE(std::abs(params[k]) <= bound);
        REQUIRE(params[k] != 7.0f);
    }
    for (size_t k = L::weight_count; k < L::param_count; ++k) REQUIRE(params[k] == 0.0f);
    // Not all equal: the weights really are random.
    CHECK(std::count(params.begin(), params.begin() + L::weight_count, params[0]) == 1);
    CHECK(pardl::Dense<8>::name() == "Dense<8>");
    CHECK(L::name() == "Dense<8>");
}

// ---------------------------------------------------------------------------------------------
// Activation values

namespace {
template <class Spec, size_t N>
std::vector<float> apply(const float (&x)[N]) {
    using L = typename Spec::template bind<Shape<N>>;
    std::vector<float> y(N, 99.0f);
    L layer(1);
    layer.forward(LayerSlots{}, ConstMatrix{x, 1, N}, Matrix{y.data(), 1, N}, StepContext{});
    return y;
}
template <class Spec, size_t N>
std::vector<float> input_gradient(const float (&x)[N], const float (&dy)[N]) {
    using L = typename Spec::template bind<Shape<N>>;
    std::vector<float> y(N), dx(N, 99.0f);
    L layer(1);
    layer.forward(LayerSlots{}, ConstMatrix{x, 1, N}, Matrix{y.data(), 1, N}, StepContext{});
    layer.backward(LayerSlots{}, ConstMatrix{x, 1, N}, ConstMatrix{y.data(), 1, N}, ConstMatrix{dy, 1, N},
                   Matrix{dx.data(), 1, N}, StepContext{});
    return dx;
}
} // namespace

TEST_CASE("ReLU values and gradient (0 at the kink, as PyTorch)", "[layers][activation]") {
    const float x[] = {-2.0f, -0.0f, 0.0f, 1e-30f, 0.5f, 3.0f};
    const auto y = apply<pardl::ReLU>(x);
    const float expect[] = {0.0f, 0.0f, 0.0f, 1e-30f, 0.5f, 3.0f};
    for (size_t k = 0; k < 6; ++k) CHECK(y[k] == expect[k]);
    const float dy[] = {5, 5, 5, 5, 5, 5};
    const auto dx = input_gradient<pardl::ReLU>(x, dy);
    const float expect_dx[] = {0, 0, 0, 5, 5, 5};
    for (size_t k = 0; k < 6; ++k) CHECK(dx[k] == expect_dx[k]);
    CHECK(pardl::ReLU::name() == "ReLU");
}

TEST_CASE("ReLU keeps NaN (as PyTorch), so a diverged value reaches the loss", "[layers][activation]") {
    // 19 values: the vector loop's body and its partial last vector both see NaN and -0.
    constexpr float nan = std::numeric_limits<float>::quiet_NaN(),
                    inf = std::numeric_limits<float>::infinity();
    float x[19];
    const float kinds[] = {nan, -0.0f, -inf, inf, -1.0f, 2.0f};
    for (size_t k = 0; k < 19; ++k) x[k] = kinds[k % 6];
    const auto y = apply<pardl::ReLU>(x);
    for (size_t k = 0; k < 19; ++k) {
        INFO("x = " << x[k] << ", y = " << y[k]);
        if (std::isnan(x[k])) {
            CHECK(std::isnan(y[k]));
        } else {
            CHECK(y[k] == (x[k] > 0.0f ? x[k] : 0.0f));
            CHECK_FALSE(std::signbit(y[k]));
        }
        CHECK(std::isnan(pardl::detail::ReluFn::value(x[k])) == std::isnan(x[k]));
    }
}

TEST_CASE("Sigmoid values match 1 / (1 + e^-x) and stay finite at +-100", "[layers][activation]") {
    float x[41];
    for (int k = 0; k < 41; ++k) x[k] = -20.0f + k;
    const auto y = apply<pardl::Sigmoid>(x);
    for (int k = 0; k < 41; ++k) {
        const double ref = 1.0 / (1.0 + std::exp(-double(x[k])));
        CHECK(y[k] == Approx(ref).epsilon(1e-6).margin(1e-12));
    }
    const float big[] = {100.0f, -100.0f, 1000.0f, -1000.0f};
    const auto yb = apply<pardl::Sigmoid>(big);
    for (float v : yb) CHECK(std::isfinite(v));
    CHECK(yb[0] == 1.0f);
    CHECK(yb[1] >= 0.0f);
    CHECK(yb[1] < 1e-40f); // e^-100 = 3.7e-44
    CHECK(yb[2] == 1.0f);
    CHECK(yb[3] == 0.0f);
    // Gradient y (1 - y): finite (zero) at the saturated ends, 1/4 at 0.
    const float dy[] = {1, 1, 1, 1};
    for (float v : input_gradient<pardl::Sigmoid>(big, dy)) {
        CHECK(std::isfinite(v));
        CHECK(std::abs(v) < 1e-30f);
    }
    const float zero[] = {0.0f};
    const float one[] = {1.0f};
    CHECK(apply<pardl::Sigmoid>(zero)[0] == 0.5f);
    CHECK(input_gradient<pardl::Sigmoid>(zero, one)[0] == 0.25f);
}

TEST_CASE("Tanh values and gradient 1 - tanh^2", "[layers][activation]") {
    float x[33];
    for (int k = 0; k < 33; ++k) x[k] = -8.0f + 0.5f * k;
    float dy[33];
    for (int k = 0; k < 33; ++k) dy[k] = 0.1f * k - 1.0f;
    const auto y = apply<pardl::Tanh>(x);
    const auto dx = input_gradient<pardl::Tanh>(x, dy);
    for (int k = 0; k < 33; ++k) {
        const double t = std::tanh(double(x[k]));
        CHECK(y[k] == Approx(t).margin(1e-6));
        CHECK(dx[k] == Approx(dy[k] * (1.0 - t * t)).margin(1e-6));
    }
    const float big[] = {50.0f, -50.0f};
    const auto yb = apply<pardl::Tanh>(big);
    CHECK(yb[0] == 1.0f);
    CHECK(yb[1] == -1.0f);
}

TEST_CASE("Flatten copies rows unchanged forward and backward", "[layers][flatten]") {
    using L = pardl::Flatten::bind<Shape<2, 2, 3>>;
    std::vector<float> x(24), y(24, -1), dy(24), dx(24, -1);
    for (size_t k = 0; k < 24; ++k) {
        x[k] = float(k) * 1.5f - 3.0f;
        dy[k] = float(k * k);
    }
    L layer(2);
    layer.forward(LayerSlots{}, ConstMatrix{x.data(), 2, 12}, Matrix{y.data(), 2, 12}, StepContext{});
    CHECK(y == x);
    layer.backward(LayerSlots{}, ConstMatrix{x.data(), 2, 12}, ConstMatrix{y.data(), 2, 12},
                   ConstMatrix{dy.data(), 2, 12}, Matrix{dx.data(), 2, 12}, StepContext{});
    CHECK(dx == dy);
    STATIC_REQUIRE(L::param_count == 0);
}

// ---------------------------------------------------------------------------------------------
// Initialisers

namespace {
struct Moments {
    double mean = 0, sd = 0, max_abs = 0;
};
template <class Init>
Moments draw(size_t fan_in, size_t fan_out, size_t n = 100000) {
    std::vector<float> w(n);
    pardl::Rng rng(17, 2);
    Init::fill(w, fan_in, fan_out, rng);
    double s = 0, s2 = 0, m = 0;
    for (float v : w) {
        s += v;
        s2 += double(v) * v;
        m = std::max(m, double(std::abs(v)));
    }
    Moments r;
    r.mean = s / n;
    r.sd = std::sqrt(s2 / n - r.mean * r.mean);
    r.max_abs = m;
    return r;
}
} // namespace

TEST_CASE("Initialisers match their formulas (empirical std over 100k draws)", "[layers][init]") {
    SECTION("He normal: sd sqrt(2 / fan_in)") {
        const auto m = draw<pardl::HeNormal>(50, 7);
        const double sd = std::sqrt(2.0 / 50);
        CHECK(m.mean == Approx(0).margin(0.01 * sd * 5));
        CHECK(m.sd == Approx(sd).epsilon(0.02));
        CHECK(m.max_abs > 3 * sd); // normal tails, not a uniform
        CHECK(pardl::HeNormal::name() == "he-normal");
    }
    SECTION("He uniform: U(-a, a), a = sqrt(6 / fan_in)") {
        const auto m = draw<pardl::HeUniform>(24, 3);
        const double a = std::sqrt(6.0 / 24);
        CHECK(m.max_abs <= a);
        CHECK(m.max_abs > 0.999 * a);
        CHECK(m.sd == Approx(a / std::sqrt(3.0)).epsilon(0.02));
        CHECK(m.mean == Approx(0).margin(0.01));
    }
    SECTION("Xavier uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out))") {
        const auto m = draw<pardl::XavierUniform>(30, 70);
        const double a = std::sqrt(6.0 / 100);
        CHECK(m.max_abs <= a);
        CHECK(m.max_abs > 0.999 * a);
        CHECK(m.sd == Approx(a / std::sqrt(3.0)).epsilon(0.02));
        CHECK(m.mean == Approx(0).margin(0.01));
    }
    SECTION("Xavier normal: sd sqrt(2 / (fan_in + fan_out))") {
        const auto m = draw<pardl::XavierNormal>(40, 60);
        const double sd = std::sqrt(2.0 / 100);
        CHECK(m.sd == Approx(sd).epsilon(0.02));
        CHECK(m.mean == Approx(0).margin(0.01));
        CHECK(m.max_abs > 3 * sd);
    }
    STATIC_REQUIRE(pardl::Initializer<pardl::HeNormal>);
    STATIC_REQUIRE(!pardl::Initializer<int>);
}
