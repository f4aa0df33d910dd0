// Losses: finite-difference checks, values against double-precision references written out by
// hand (log-sum-exp, mean squared error), numerical stability, the SUM-over-rows contract and
// argmax counting.
#include "pardl/core/rng.hpp"
#include "pardl/losses/mse.hpp"
#include "pardl/losses/softmax_cross_entropy.hpp"
#include "pardl/testing/gradcheck.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace {

using pardl::ConstMatrix;
using pardl::Matrix;
using pardl::MSE;
using pardl::SoftmaxCrossEntropy;
using pardl::Targets;
using std::size_t;
namespace pt = pardl::testing;

/// Reference cross-entropy of one row in double: log(sum_j exp(z_j)) - z_label, with the max
/// taken out by hand; and its gradient softmax(z) - onehot(label).
double reference_ce(const std::vector<double>& z, size_t label, std::vector<double>* grad = nullptr) {
    const double m = *std::max_element(z.begin(), z.end());
    double s = 0;
    for (double v : z) s += std::exp(v - m);
    if (grad) {
        grad->resize(z.size());
        for (size_t j = 0; j < z.size(); ++j) (*grad)[j] = std::exp(z[j] - m) / s - (j == label ? 1.0 : 0.0);
    }
    return m + std::log(s) - z[label];
}

} // namespace

TEST_CASE("check_loss: SoftmaxCrossEntropy", "[losses][gradcheck]") {
    for (auto [rows, cols] : {std::pair<size_t, size_t>{1, 2}, {4, 6}, {7, 10}, {3, 33}}) {
        const auto report = pt::check_loss<SoftmaxCrossEntropy>(rows, cols);
        INFO(rows << " x " << cols << ": " << report.summary());
        REQUIRE(report.checked > 1);
        REQUIRE(report.ok);
    }
}

TEST_CASE("A gradient check that would compare nothing, or pass anything, is refused",
          "[losses][gradcheck]") {
    using pardl::ConfigError;
    CHECK_THROWS_WITH(pt::check_loss<SoftmaxCrossEntropy>(3, 0),
                      Catch::Contains("cols must be in [1, 2^20]"));
    CHECK_THROWS_WITH(pt::check_loss<SoftmaxCrossEntropy>(0, 4),
                      Catch::Contains("rows must be in [1, 2^20]"));
    CHECK_THROWS_WITH(pt::check_loss<MSE>(3, 4, {.max_checks = 0}),
                      Catch::Contains("max_checks must be >= 1"));
    CHECK_THROWS_AS(pt::check_loss<MSE>(3, 4, {.rtol = -1}), ConfigError);
    CHECK_THROWS_AS(pt::check_loss<MSE>(3, 4, {.rtol = 0, .atol = 0}), ConfigError);
    CHECK_THROWS_AS(pt::check_loss<MSE>(3, 4, {.step = 0}), ConfigError);
    CHECK_THROWS_AS(pt::check_loss<MSE>(size_t{1} << 62, 4), ConfigError);
    CHECK(pt::check_loss<MSE>(1, 1).ok); // the smallest check that compares something
}

TEST_CASE("check_loss: MSE", "[losses][gradcheck]") {
    for (auto [rows, cols] : {std::pair<size_t, size_t>{1, 1}, {4, 5}, {6, 13}}) {
        const auto report = pt::check_loss<MSE>(rows, cols);
        INFO(rows << " x " << cols << ": " << report.summary());
        REQUIRE(report.checked > 1);
        REQUIRE(report.ok);
    }
}

TEST_CASE("SoftmaxCrossEntropy value and gradient match a double-precision reference", "[losses][ce]") {
    constexpr size_t rows = 5, cols = 7;
    pardl::Rng rng(4242);
    std::vector<float> z(rows * cols), dz(rows * cols, 99.0f);
    std::vector<std::int32_t> labels(rows);
    for (float& v : z) v = rng.uniform(-6.0f, 6.0f);
    for (auto& l : labels) l = static_cast<std::int32_t>(rng.below(cols));
    const Targets t{labels, {}};

    const double got = SoftmaxCrossEntropy::forward_backward(ConstMatrix{z.data(), rows, cols}, t,
                                                             Matrix{dz.data(), rows, cols});
    double expect = 0;
    for (size_t r = 0; r < rows; ++r) {
        std::vector<double> zr(z.begin() + r * cols, z.begin() + (r + 1) * cols), g;
        expect += reference_ce(zr, labels[r], &g);
        double row_sum = 0;
        for (size_t j = 0; j < cols; ++j) {
            CHECK(dz[r * cols + j] == Approx(g[j]).margin(1e-6));
            row_sum += dz[r * cols + j];
        }
        CHECK(row_sum == Approx(0).margin(1e-6)); // softmax sums to one, the one-hot too
    }
    CHECK(got == Approx(expect).epsilon(1e-6));
    CHECK(SoftmaxCrossEntropy::loss(ConstMatrix{z.data(), rows, cols}, t) == Approx(expect).epsilon(1e-6));
}

TEST_CASE("SoftmaxCrossEntropy hand-worked values", "[losses][ce]") {
    // Uniform logits over 4 classes: loss log 4, gradient 1/4 - onehot.
    const float z[] = {3, 3, 3, 3};
    const std::int32_t label[] = {2};
    float dz[4];
    const double l =
        SoftmaxCrossEntropy::forward_backward(ConstMatrix{z, 1, 4}, Targets{label, {}}, Matrix{dz, 1, 4});
    CHECK(l == Approx(std::log(4.0)).epsilon(1e-7));
    CHECK(dz[0] == Approx(0.25));
    CHECK(dz[2] == Approx(-0.75));
    // Two classes [0, ln 3]: p = [1/4, 3/4]; label 0 costs ln 4.
    const float z2[] = {0.0f, static_cast<float>(std::log(3.0))};
    const std::int32_t label0[] = {0};
    float dz2[2];
    CHECK(SoftmaxCrossEntropy::forward_backward(ConstMatrix{z2, 1, 2}, Targets{label0, {}},
                                                Matrix{dz2, 1, 2}) == Approx(std::log(4.0)).epsilon(1e-6));
    CHECK(dz2[0] == Approx(0.25 - 1.0).epsilon(1e-6));
    CHECK(dz2[1] == Approx(0.75).epsilon(1e-6));
}

TEST_CASE("SoftmaxCrossEntropy is stable for logits of +-1e4", "[losses][ce]") {
    // Row 0: [1e4, -1e4, 0], label 1 -> loss 2e4 (+ log(1 + e^-1e4 + ...)), gradient [1, -1, 0].
    // Row 1: same logits, label 0 -> loss ~ e^-1e4 = 0, gradient ~ 0.
    // Row 2: [1e4, 9999, 9998], label 2 -> loss 2 + log(1 + e^-1 + e^-2): exp(1e4) overflows if
    //        the max is not subtracted.
    const float z[] = {1e4f, -1e4f, 0.0f, 1e4f, -1e4f, 0.0f, 1e4f, 9999.0f, 9998.0f};
    const std::int32_t labels[] = {1, 0, 2};
    float dz[9];
    const Targets t{labels, {}};
    double per_row[3];
    for (size_t r = 0; r < 3; ++r) {
        float g[3];
        per_row[r] = SoftmaxCrossEntropy::forward_backward(ConstMatrix{z + 3 * r, 1, 3},
                                                           Targets{{labels + r, 1}, {}}, Matrix{g, 1, 3});
        for (float v : g) REQUIRE(std::isfinite(v));
    }
    const double total = SoftmaxCrossEntropy::forward_backward(ConstMatrix{z, 3, 3}, t, Matrix{dz, 3, 3});
    REQUIRE(std::isfinite(total));
    for (float v : dz) REQUIRE(std::isfinite(v));

    CHECK(per_row[0] == Approx(2e4).epsilon(1e-12));
    CHECK(per_row[1] == Approx(0.0).margin(1e-12));
    const double e1 = std::exp(-1.0), e2 = std::exp(-2.0);
    CHECK(per_row[2] == Approx(2.0 + std::log(1.0 + e1 + e2)).epsilon(1e-9));
    CHECK(total == Approx(per_row[0] + per_row[1] + per_row[2]).epsilon(1e-12));

    CHECK(dz[0] == Approx(1.0).margin(1e-6));
    CHECK(dz[1] == Approx(-1.0).margin(1e-6));
    CHECK(dz[2] == Approx(0.0).margin(1e-6));
    CHECK(dz[3] == Approx(0.0).margin(1e-6));
    CHECK(dz[4] == Approx(0.0).margin(1e-6));
    const double s = 1.0 + e1 + e2;
    CHECK(dz[6] == Approx(1.0 / s).margin(1e-6));
    CHECK(dz[7] == Approx(e1 / s).margin(1e-6));
    CHECK(dz[8] == Approx(e2 / s - 1.0).margin(1e-6));
}

TEST_CASE("SoftmaxCrossEntropy returns the SUM over rows", "[losses][ce]") {
    const float one[] = {0.3f, -1.2f, 2.0f, 0.1f};
    const float two[] = {0.3f, -1.2f, 2.0f, 0.1f, 0.3f, -1.2f, 2.0f, 0.1f};
    const std::int32_t l1[] = {3};
    const std::int32_t l2[] = {3, 3};
    float g1[4], g2[8];
    const double a =
        SoftmaxCrossEntropy::forward_backward(ConstMatrix{one, 1, 4}, Targets{l1, {}}, Matrix{g1, 1, 4});
    const double b =
        SoftmaxCrossEntropy::forward_backward(ConstMatrix{two, 2, 4}, Targets{l2, {}}, Matrix{g2, 2, 4});
    const double ref = reference_ce({0.3f, -1.2f, 2.0f, 0.1f}, 3);
    CHECK(a == Approx(ref).epsilon(1e-7));
    CHECK(b == Approx(2 * ref).epsilon(1e-7));
    // The gradient is of the sum: each row's gradient is not divided by the row count.
    for (size_t j = 0; j < 4; ++j) {
        CHECK(g2[j] == g1[j]);
        CHECK(g2[4 + j] == g1[j]);
    }
}

TEST_CASE("correct() counts rows whose argmax equals the label", "[losses][correct]") {
    // Argmaxes: 2, 0, 1, 1 (row 3 ties between 1 and 3: the first wins).
    const float z[] = {0, 1, 5, 2, /**/ 9, 1, 5, 2, /**/ -3, -1, -2, -5, /**/ 0, 4, 1, 4};
    const std::int32_t labels[] = {2, 1, 1, 3};
    const ConstMatrix m{z, 4, 4};
    CHECK(SoftmaxCrossEntropy::correct(m, Targets{labels, {}}) == 2);
    CHECK(MSE::correct(m, Targets{labels, {}}) == 2);
    const std::int32_t all_right[] = {2, 0, 1, 1};
    CHECK(SoftmaxCrossEntropy::correct(m, Targets{all_right, {}}) == 4);
    const std::int32_t none_right[] = {0, 3, 0, 3};
    CHECK(SoftmaxCrossEntropy::correct(m, Targets{none_right, {}}) == 0);
    // Without labels nothing is counted.
    CHECK(SoftmaxCrossEntropy::correct(m, Targets{}) == 0);
}

TEST_CASE("MSE: mean over columns, summed over rows, with gradient 2 (o - t) / D", "[losses][mse]") {
    const float o[] = {1.0f, 2.0f, 3.0f, /**/ -1.0f, 0.5f, 0.0f};
    const float t[] = {0.0f, 2.0f, 5.0f, /**/ 1.0f, 0.5f, -3.0f};
    // Row 0: (1 + 0 + 4) / 3 = 5/3; row 1: (4 + 0 + 9) / 3 = 13/3; sum 6.
    const Targets targets{{}, ConstMatrix{t, 2, 3}};
    float g[6];
    const double l = MSE::forward_backward(ConstMatrix{o, 2, 3}, targets, Matrix{g, 2, 3});
    CHECK(l == Approx(6.0).epsilon(1e-12));
    CHECK(MSE::loss(ConstMatrix{o, 2, 3}, targets) == Approx(6.0).epsilon(1e-12));
    const double expect_g[] = {2.0 / 3, 0, -4.0 / 3, -4.0 / 3, 0, 2.0};
    for (size_t k = 0; k < 6; ++k) CHECK(g[k] == Approx(expect_g[k]).margin(1e-6));
}

TEST_CASE("MSE matches a double-precision reference on random data", "[losses][mse]") {
    constexpr size_t rows = 9, cols = 11;
    pardl::Rng rng(8);
    std::vector<float> o(rows * cols), t(rows * cols), g(rows * cols);
    for (float& v : o) v = rng.uniform(-2, 2);
    for (float& v : t) v = rng.uniform(-2, 2);
    const double l =
        MSE::forward_backward(ConstMatrix{o.data(), rows, cols},
                              Targets{{}, ConstMatrix{t.data(), rows, cols}}, Matrix{g.data(), rows, cols});
    double ref = 0;
    for (size_t r = 0; r < rows; ++r) {
        double row = 0;
        for (size_t j = 0; j < cols; ++j) {
            const double e = double(o[r * cols + j]) - t[r * cols + j];
            row += e * e;
            CHECK(g[r * cols + j] == Approx(2.0 * e / cols).margin(1e-6));
        }
        ref += row / cols;
    }
    CHECK(l == Approx(ref).epsilon(1e-9));
}

TEST_CASE("Loss accepts<> and the Loss concept", "[losses]") {
    STATIC_REQUIRE(pardl::Loss<SoftmaxCrossEntropy>);
    STATIC_REQUIRE(pardl::Loss<MSE>);
    STATIC_REQUIRE(SoftmaxCrossEntropy::accepts<pardl::Shape<10>>);
    STATIC_REQUIRE(!SoftmaxCrossEntropy::accepts<pardl::Shape<1>>);
    STATIC_REQUIRE(!SoftmaxCrossEntropy::accepts<pardl::Shape<2, 5>>);
    STATIC_REQUIRE(MSE::accepts<pardl::Shape<1>>);
}
