// Optimizers against scalar double-precision references that follow PyTorch's documented update
// rules (torch.optim.SGD, Adam, AdamW with amsgrad off, maximize off, dampening 0), the
// slice-invariance contract of update(), and option validation.
#include "pardl/core/errors.hpp"
#include "pardl/optimizers/adam.hpp"
#include "pardl/optimizers/schedule.hpp"
#include "pardl/optimizers/sgd.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace {

using std::size_t;
// 37 elements: two AVX-512 vectors (nine SSE ones) and a partial one, so that both the vector body
// and the tail of simd::for_each_vector are checked against the references.
constexpr size_t n = 37;
constexpr int steps = 10;

/// A fixed gradient sequence (independent of the parameters, so the reference and the optimizer
/// see exactly the same gradients) with mixed signs and magnitudes.
float grad_at(int t, size_t i) {
    return static_cast<float>(std::sin(0.9 * double(i) + 1.7 * t) * (1.0 + 0.3 * double(i)));
}

std::vector<float> initial_params() {
    std::vector<float> p(n);
    for (size_t i = 0; i < n; ++i) p[i] = 0.5f - 0.25f * float(i) + 0.03f * float(i * i);
    return p;
}

/// Runs `steps` steps of the optimizer on the whole vector and returns the parameters after each step.
template <class Opt>
std::vector<std::vector<float>> run(Opt&& opt) {
    std::vector<float> p = initial_params();
    opt.reset(n);
    std::vector<std::vector<float>> history;
    for (int t = 1; t <= steps; ++t) {
        std::vector<float> g(n);
        for (size_t i = 0; i < n; ++i) g[i] = grad_at(t, i);
        opt.begin_step();
        opt.update(std::span<float>(p), std::span<const float>(g), 0);
        history.push_back(p);
    }
    return history;
}

// --- PyTorch's rules, in double, one scalar at a time ---

struct SgdRef {
    double lr, mu, wd;
    bool nesterov;
    std::vector<double> p, buf;
    bool first = true;
    void step(int t) {
        for (size_t i = 0; i < p.size(); ++i) {
            double g = grad_at(t, i);
            if (wd != 0) g += wd * p[i];
            if (mu != 0) {
                // torch: buf = g on the first step, then buf = mu * buf + (1 - dampening) * g.
                buf[i] = first ? g : mu * buf[i] + g;
                g = nesterov ? g + mu * buf[i] : buf[i];
            }
            p[i] -= lr * g;
        }
        first = false;
    }
};

struct AdamRef {
    double lr, b1, b2, eps, wd;
    bool decoupled;
    std::vector<double> p, m, v;
    void step(int t) {
        for (size_t i = 0; i < p.size(); ++i) {
            double g = grad_at(t, i);
            if (decoupled)
                p[i] *= 1.0 - lr * wd; // AdamW: theta = theta - lr * lambda * theta
            else if (wd != 0)
                g += wd * p[i]; // Adam: g = g + lambda * theta
            m[i] = b1 * m[i] + (1 - b1) * g;
            v[i] = b2 * v[i] + (1 - b2) * g * g;
            const double m_hat = m[i] / (1 - std::pow(b1, t));
            const double v_hat = v[i] / (1 - std::pow(b2, t));
            p[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
        }
    }
};

std::vector<double> to_double(const std::vector<float>& v) {
    return {v.begin(), v.end()};
}

void compare(const std::vector<std::vector<float>>& got, auto& ref, double tol) {
    double moved = 0;
    const auto p0 = initial_params();
    for (int t = 1; t <= steps; ++t) {
        ref.step(t);
        for (size_t i = 0; i < n; ++i) {
            INFO("step " << t << ", element " << i);
            CHECK(got[t - 1][i] == Approx(ref.p[i]).epsilon(tol).margin(tol));
        }
    }
    for (size_t i = 0; i < n; ++i) moved += std::abs(ref.p[i] - p0[i]);
    CHECK(moved > 0.1); // the comparison is not of parameters that never changed
}

} // namespace

TEST_CASE("SGD matches torch.optim.SGD", "[optimizers][sgd]") {
    SECTION("plain") {
        pardl::SGD::Options o;
        o.lr = 0.1f;
        SgdRef ref{0.1, 0, 0, false, to_double(initial_params()), std::vector<double>(n)};
        compare(run(pardl::SGD(o)), ref, 1e-5);
    }
    SECTION("weight decay") {
        pardl::SGD::Options o;
        o.lr = 0.1f;
        o.weight_decay = 0.05f;
        SgdRef ref{0.1, 0, 0.05, false, to_double(initial_params()), std::vector<double>(n)};
        compare(run(pardl::SGD(o)), ref, 1e-5);
    }
    SECTION("momentum") {
        pardl::SGD::Options o;
        o.lr = 0.05f;
        o.momentum = 0.9f;
        SgdRef ref{0.05, 0.9, 0, false, to_double(initial_params()), std::vector<double>(n)};
        compare(run(pardl::SGD(o)), ref, 1e-5);
    }
    SECTION("momentum and weight decay") {
        pardl::SGD::Options o;
        o.lr = 0.05f;
        o.momentum = 0.8f;
        o.weight_decay = 0.01f;
        SgdRef ref{0.05, 0.8, 0.01, false, to_double(initial_params()), std::vector<double>(n)};
        compare(run(pardl::SGD(o)), ref, 1e-5);
    }
    SECTION("Nesterov") {
        pardl::SGD::Options o;
        o.lr = 0.05f;
        o.momentum = 0.9f;
        o.nesterov = true;
        SgdRef ref{0.05, 0.9, 0, true, to_double(initial_params()), std::vector<double>(n)};
        compare(run(pardl::SGD(o)), ref, 1e-5);
    }
    SECTION("Nesterov and weight decay") {
        pardl::SGD::Options o;
        o.lr = 0.03f;
        o.momentum = 0.7f;
        o.nesterov = true;
        o.weight_decay = 0.1f;
        SgdRef ref{0.03, 0.7, 0.1, true, to_double(initial_params()), std::vector<double>(n)};
        compare(run(pardl::SGD(o)), ref, 1e-5);
    }
}

TEST_CASE("Learning rates, weight decay and eps must be finite, and a rate set in training may be 0",
          "[optimizers]") {
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_WITH(pardl::SGD({.lr = inf}),
                      Catch::Contains("SGD: learning rate must be a finite number > 0"));
    CHECK_THROWS_AS(pardl::SGD({.lr = 0.0f}), pardl::ConfigError);
    CHECK_THROWS_WITH(pardl::SGD({.lr = 0.1f, .weight_decay = inf}),
                      Catch::Contains("weight decay must be a finite"));
    CHECK_THROWS_WITH(pardl::Adam({.lr = inf}),
                      Catch::Contains("adam: learning rate must be a finite number > 0"));
    CHECK_THROWS_WITH(pardl::Adam({.eps = inf}), Catch::Contains("eps must be a finite number > 0"));
    CHECK_THROWS_AS(pardl::AdamW({.weight_decay = nan}), pardl::ConfigError);
    pardl::SGD sgd({.lr = 0.1f});
    pardl::Adam adam;
    for (const float bad : {-1.0f, nan, inf}) {
        CHECK_THROWS_WITH(sgd.set_learning_rate(bad),
                          Catch::Contains("learning rate must be a finite number >= 0"));
        CHECK_THROWS_AS(adam.set_learning_rate(bad), pardl::ConfigError);
    }
    CHECK(sgd.learning_rate() == 0.1f); // unchanged by the refused ones
    sgd.set_learning_rate(0.0f);        // a schedule may end at 0
    CHECK(sgd.learning_rate() == 0.0f);
}

TEST_CASE("SGD: one plain step by hand", "[optimizers][sgd]") {
    pardl::SGD::Options o;
    o.lr = 0.5f;
    o.weight_decay = 0.25f;
    pardl::SGD sgd(o);
    sgd.reset(2);
    float p[] = {2.0f, -4.0f};
    const float g[] = {1.0f, 1.0f};
    sgd.begin_step();
    sgd.update(p, g, 0);
    // p - 0.5 * (g + 0.25 p): 2 - 0.5 * 1.5 = 1.25; -4 - 0.5 * 0 = -4.
    CHECK(p[0] == 1.25f);
    CHECK(p[1] == -4.0f);
    sgd.set_learning_rate(0.125f);
    CHECK(sgd.learning_rate() == 0.125f);
    sgd.begin_step();
    sgd.update(p, g, 0);
    // 1.25 - 0.125 * (1 + 0.3125) = 1.0859375
    CHECK(p[0] == Approx(1.0859375).epsilon(1e-7));
    CHECK(pardl::SGD().name() == "sgd");
}

TEST_CASE("Adam matches torch.optim.Adam", "[optimizers][adam]") {
    SECTION("defaults but a larger learning rate") {
        pardl::Adam::Options o;
        o.lr = 0.05f;
        AdamRef ref{0.05,
                    0.9,
                    0.999,
                    1e-8,
                    0,
                    false,
                    to_double(initial_params()),
                    std::vector<double>(n),
                    std::vector<double>(n)};
        compare(run(pardl::Adam(o)), ref, 2e-5);
    }
    SECTION("other betas and L2 weight decay") {
        pardl::Adam::Options o;
        o.lr = 0.02f;
        o.beta1 = 0.8f;
        o.beta2 = 0.99f;
        o.eps = 1e-6f;
        o.weight_decay = 0.1f;
        AdamRef ref{0.02,
                    0.8,
                    0.99,
                    1e-6,
                    0.1,
                    false,
                    to_double(initial_params()),
                    std::vector<double>(n),
                    std::vector<double>(n)};
        compare(run(pardl::Adam(o)), ref, 2e-5);
    }
    CHECK(pardl::Adam::name() == "adam");
}

TEST_CASE("AdamW matches torch.optim.AdamW (decoupled weight decay)", "[optimizers][adam]") {
    SECTION("default weight decay 0.01") {
        pardl::AdamW::Options o;
        CHECK(o.weight_decay == 0.01f); // torch's AdamW default
        o.lr = 0.05f;
        AdamRef ref{0.05,
                    0.9,
                    0.999,
                    1e-8,
                    0.01,
                    true,
                    to_double(initial_params()),
                    std::vector<double>(n),
                    std::vector<double>(n)};
        compare(run(pardl::AdamW(o)), ref, 2e-5);
    }
    SECTION("large weight decay, where coupled and decoupled clearly differ") {
        pardl::AdamW::Options o;
        o.lr = 0.05f;
        o.weight_decay = 0.5f;
        AdamRef ref{0.05,
                    0.9,
                    0.999,
                    1e-8,
                    0.5,
                    true,
                    to_double(initial_params()),
                    std::vector<double>(n),
                    std::vector<double>(n)};
        const auto got = run(pardl::AdamW(o));
        compare(got, ref, 2e-5);
        // Sanity on the references themselves: Adam with the same (coupled) decay ends elsewhere.
        AdamRef coupled{0.05,
                        0.9,
                        0.999,
                        1e-8,
                        0.5,
                        false,
                        to_double(initial_params()),
                        std::vector<double>(n),
                        std::vector<double>(n)};
        for (int t = 1; t <= steps; ++t) coupled.step(t);
        double diff = 0;
        for (size_t i = 0; i < n; ++i) diff += std::abs(coupled.p[i] - got.back()[i]);
        CHECK(diff > 1e-3);
    }
    CHECK(pardl::AdamW::name() == "adamw");
}

TEST_CASE("Adam: the first step moves every parameter by lr against the gradient sign",
          "[optimizers][adam]") {
    // With bias correction, step 1 gives m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps).
    pardl::Adam::Options o;
    o.lr = 0.01f;
    pardl::Adam adam(o);
    adam.reset(3);
    float p[] = {1.0f, 1.0f, 1.0f};
    const float g[] = {100.0f, -0.001f, 3.0f};
    adam.begin_step();
    adam.update(p, g, 0);
    CHECK(p[0] == Approx(0.99).epsilon(1e-6));
    CHECK(p[1] == Approx(1.01).epsilon(1e-5));
    CHECK(p[2] == Approx(0.99).epsilon(1e-6));
}

TEST_CASE("Adam::reset restarts the step count and moments", "[optimizers][adam]") {
    pardl::Adam::Options o;
    o.lr = 0.05f;
    pardl::Adam adam(o);
    const auto first = run(adam);
    // `run` resets the optimizer it is given; reusing one object twice must give the same history.
    pardl::Adam reused(o);
    (void)run(reused);
    std::vector<float> p = initial_params();
    reused.reset(n);
    std::vector<float> g(n);
    for (size_t i = 0; i < n; ++i) g[i] = grad_at(1, i);
    reused.begin_step();
    reused.update(std::span<float>(p), std::span<const float>(g), 0);
    for (size_t i = 0; i < n; ++i) CHECK(p[i] == first[0][i]);
}

namespace {
/// Runs two optimizers made from `o` side by side from the same parameters: each step calls
/// step(first, a, second, b, g) with that step's gradient g. Both must end with the same bits.
template <class Opt, class Step>
void check_same_bits(typename Opt::Options o, Step&& step) {
    Opt first(o), second(o);
    std::vector<float> a = initial_params(), b = initial_params();
    first.reset(n);
    second.reset(n);
    for (int t = 1; t <= steps; ++t) {
        std::vector<float> g(n);
        for (size_t i = 0; i < n; ++i) g[i] = grad_at(t, i);
        first.begin_step();
        second.begin_step();
        step(first, std::span<float>(a), second, std::span<float>(b), std::span<const float>(g));
    }
    for (size_t i = 0; i < n; ++i) {
        INFO("element " << i);
        CHECK(a[i] == b[i]); // bit-identical: the same arithmetic per element
    }
}

/// Full update vs. the same update in two slices [0, k) and [k, n).
template <class Opt>
void check_slices(typename Opt::Options o, size_t k) {
    INFO("k " << k);
    check_same_bits<Opt>(
        o, [k](Opt& whole, std::span<float> a, Opt& sliced, std::span<float> b, std::span<const float> g) {
            whole.update(a, g, 0);
            // Second slice first: the order of slices must not matter either.
            sliced.update(b.subspan(k), g.subspan(k), k);
            sliced.update(b.first(k), g.first(k), 0);
        });
}

/// Calls check.template operator()<Opt>(options) for each configuration the bit-for-bit tests
/// cover: SGD plain, with momentum, with weight decay and with Nesterov momentum; Adam with L2
/// weight decay; AdamW.
template <class Check>
void for_each_configuration(Check&& check) {
    pardl::SGD::Options s;
    s.lr = 0.05f;
    check.template operator()<pardl::SGD>(s);
    s.momentum = 0.9f;
    check.template operator()<pardl::SGD>(s);
    s.weight_decay = 0.01f;
    check.template operator()<pardl::SGD>(s);
    s.nesterov = true;
    check.template operator()<pardl::SGD>(s);
    pardl::Adam::Options a;
    a.lr = 0.05f;
    a.weight_decay = 0.01f;
    check.template operator()<pardl::Adam>(a);
    pardl::AdamW::Options w;
    w.lr = 0.05f;
    check.template operator()<pardl::AdamW>(w);
}
} // namespace

TEST_CASE("update() on two slices equals one full update", "[optimizers][slices]") {
    for (size_t k : {size_t{1}, size_t{3}, size_t{6}, size_t{16}, size_t{17}, size_t{30}})
        for_each_configuration([k]<class Opt>(typename Opt::Options o) { check_slices<Opt>(o, k); });
}

TEST_CASE("Invalid optimizer options throw ConfigError", "[optimizers][config]") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    auto sgd = [](float lr, float mu, bool nesterov, float wd) {
        pardl::SGD::Options o;
        o.lr = lr;
        o.momentum = mu;
        o.nesterov = nesterov;
        o.weight_decay = wd;
        return pardl::SGD(o);
    };
    CHECK_NOTHROW(sgd(0.1f, 0.0f, false, 0.0f));
    CHECK_NOTHROW(sgd(0.1f, 0.9f, true, 0.1f));
    CHECK_THROWS_AS(sgd(0.0f, 0.0f, false, 0.0f), pardl::ConfigError);
    CHECK_THROWS_AS(sgd(-0.1f, 0.0f, false, 0.0f), pardl::ConfigError);
    CHECK_THROWS_AS(sgd(nan, 0.0f, false, 0.0f), pardl::ConfigError);
    CHECK_THROWS_AS(sgd(0.1f, 1.0f, false, 0.0f), pardl::ConfigError);
    CHECK_THROWS_AS(sgd(0.1f, -0.5f, false, 0.0f), pardl::ConfigError);
    CHECK_THROWS_AS(sgd(0.1f, 0.0f, true, 0.0f), pardl::ConfigError); // Nesterov without momentum
    CHECK_THROWS_AS(sgd(0.1f, 0.5f, false, -1e-4f), pardl::ConfigError);
    CHECK_THROWS_WITH(sgd(-1.0f, 0.0f, false, 0.0f), Catch::Contains("learning rate"));

    auto adam = [](float lr, float b1, float b2, float eps, float wd) {
        pardl::Adam::Options o{lr, b1, b2, eps, wd};
        return pardl::Adam(o);
    };
    CHECK_NOTHROW(adam(1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f));
    CHECK_NOTHROW(adam(1e-3f, 0.0f, 0.0f, 1e-8f, 0.0f));
    CHECK_THROWS_AS(adam(0.0f, 0.9f, 0.999f, 1e-8f, 0.0f), pardl::ConfigError);
    CHECK_THROWS_AS(adam(nan, 0.9f, 0.999f, 1e-8f, 0.0f), pardl::ConfigError);
    CHECK_THROWS_AS(adam(1e-3f, 1.0f, 0.999f, 1e-8f, 0.0f), pardl::ConfigError);
    CHECK_THROWS_AS(adam(1e-3f, 0.9f, 1.0f, 1e-8f, 0.0f), pardl::ConfigError);
    CHECK_THROWS_AS(adam(1e-3f, -0.1f, 0.999f, 1e-8f, 0.0f), pardl::ConfigError);
    CHECK_THROWS_AS(adam(1e-3f, 0.9f, -0.1f, 1e-8f, 0.0f), pardl::ConfigError);
    CHECK_THROWS_AS(adam(1e-3f, 0.9f, 0.999f, 0.0f, 0.0f), pardl::ConfigError);
    CHECK_THROWS_AS(adam(1e-3f, 0.9f, 0.999f, 1e-8f, -0.01f), pardl::ConfigError);

    pardl::AdamW::Options w;
    w.beta2 = 1.5f;
    CHECK_THROWS_AS(pardl::AdamW(w), pardl::ConfigError);
    // ConfigError is a pardl::Error, so callers can catch the family.
    CHECK_THROWS_AS(pardl::AdamW(w), pardl::Error);
}

namespace {
/// update(p, g, offset, s) against update(p, g * s, offset): the scale applied as the optimizer
/// reads the gradient must round exactly as a pass that scaled the gradient first.
template <class Opt>
void check_scaled(typename Opt::Options o, float scale) {
    static_assert(pardl::ScalesGradient<Opt>);
    INFO("scale " << scale);
    check_same_bits<Opt>(o, [scale](Opt& fused, std::span<float> a, Opt& prescaled, std::span<float> b,
                                    std::span<const float> g) {
        // A summed gradient, several samples' worth, so that scaling it rounds.
        std::vector<float> sum(n), scaled(n);
        for (size_t i = 0; i < n; ++i) {
            sum[i] = 7.3f * g[i];
            scaled[i] = sum[i] * scale;
        }
        fused.update(a, std::span<const float>(sum), 0, scale);
        prescaled.update(b, std::span<const float>(scaled), 0);
    });
}
} // namespace

TEST_CASE("a gradient scaled inside update() gives the bits of a gradient scaled first",
          "[optimizers][scale]") {
    // 1/64 is exact; 1/3 and 1/7 round, as the last batch of an epoch does.
    for (float scale : {1.0f / 64.0f, 1.0f / 3.0f, 1.0f / 7.0f})
        for_each_configuration([scale]<class Opt>(typename Opt::Options o) { check_scaled<Opt>(o, scale); });
}

TEST_CASE("Optimizers name their settings, and each reads back as the same float", "[optimizers][settings]") {
    using Settings = std::vector<std::pair<std::string, std::string>>;
    STATIC_REQUIRE(pardl::OptimizerSettings<pardl::SGD>);
    STATIC_REQUIRE(pardl::OptimizerSettings<pardl::Adam>);
    CHECK(pardl::SGD({.lr = 0.1f, .momentum = 0.9f, .weight_decay = 5e-4f}).settings() ==
          Settings{{"momentum", "0.9"}, {"weight decay", "5e-04"}});
    CHECK(pardl::AdamW().settings() ==
          Settings{{"beta1", "0.9"}, {"beta2", "0.999"}, {"eps", "1e-08"}, {"weight decay", "0.01"}});
    // The shortest text that is the same float.
    for (float v : {0.9f, std::nextafter(0.9f, 1.0f), 1.0f / 3.0f, 1e-8f, 0.0f, 123456789.0f}) {
        const std::string text = pardl::setting_text(v);
        INFO(text);
        CHECK(std::strtof(text.c_str(), nullptr) == v);
        CHECK(text.size() <= 15);
    }
    CHECK(pardl::setting_text(std::nextafter(0.9f, 1.0f)) == "0.90000004"); // 8 digits
}

TEST_CASE("Learning-rate schedules follow their formulas", "[optimizers][schedule]") {
    using namespace pardl;
    SECTION("step_decay: lr * gamma^floor(step / every)") {
        const Schedule s = schedule::step_decay(0.1f, 10, 0.5f);
        CHECK(s(0) == 0.1f);
        CHECK(s(9) == 0.1f);
        CHECK(s(10) == 0.05f);
        CHECK(s(25) == 0.025f);
    }
    SECTION("multi_step: lr * gamma^(milestones passed), as MultiStepLR") {
        const Schedule s = schedule::multi_step(0.1f, {3, 5}, 0.1f);
        // lr * gamma^n in double, rounded once to float, as step_decay.
        const auto decayed = [](int n) {
            return static_cast<float>(0.1f * std::pow(static_cast<double>(0.1f), n));
        };
        CHECK(s(0) == 0.1f);
        CHECK(s(2) == 0.1f);
        CHECK(s(3) == decayed(1)); // the milestone's own step already decayed
        CHECK(s(4) == decayed(1));
        CHECK(s(5) == decayed(2));
        CHECK(s(1000) == decayed(2));
        CHECK(s(3) == Approx(0.01f));
        // One milestone every `every` steps is step_decay, bit for bit.
        const Schedule d = schedule::step_decay(0.3f, 4, 0.5f);
        const Schedule m = schedule::multi_step(0.3f, {4, 8, 12, 16}, 0.5f);
        for (std::uint64_t t = 0; t < 20; ++t) CHECK(m(t) == d(t));
    }
    SECTION("cosine: lr at 0, the midpoint halfway, min_lr from `steps` on, never rising") {
        const Schedule s = schedule::cosine(0.1f, 100, 0.01f);
        CHECK(s(0) == 0.1f);
        CHECK(s(50) == Approx(0.055f).epsilon(1e-6));
        CHECK(s(100) == 0.01f);
        CHECK(s(1000) == 0.01f);
        for (std::uint64_t t = 1; t <= 100; ++t) CHECK(s(t) <= s(t - 1));
        CHECK(schedule::cosine(0.1f, 100)(99) > 0.0f); // every step before the end still learns
    }
    SECTION("warmup: linear up to the schedule's first rate, then the schedule from its own step 0") {
        const Schedule s = schedule::warmup(4, schedule::step_decay(0.2f, 5, 0.1f));
        CHECK(s(0) == Approx(0.05f));
        CHECK(s(1) == Approx(0.10f));
        CHECK(s(3) == 0.2f);          // the warm-up's last step reaches after(0)
        CHECK(s(4) == 0.2f);          // after(0)
        CHECK(s(8) == 0.2f);          // after(4)
        CHECK(s(9) == Approx(0.02f)); // after(5): the decay counts from the warm-up's end
        CHECK(schedule::warmup(3, schedule::constant(0.3f))(1) == Approx(0.2f));
        // Into a cosine: the peak is the cosine's full rate, not a rate already decayed.
        const Schedule c = schedule::warmup(500, schedule::cosine(0.1f, 1000));
        CHECK(c(499) == 0.1f);
        CHECK(c(500) == 0.1f);
        CHECK(c(1000) == Approx(0.05f).epsilon(1e-6));
        CHECK(c(1500) == 0.0f);
    }
    SECTION("arguments no schedule can use are refused by name") {
        CHECK_THROWS_WITH(schedule::step_decay(0.1f, 0, 0.5f), Catch::Contains("every"));
        CHECK_THROWS_WITH(schedule::step_decay(0.1f, 10, 1.5f), Catch::Contains("gamma"));
        CHECK_THROWS_WITH(schedule::multi_step(0.1f, {}, 0.5f), Catch::Contains("no milestones"));
        CHECK_THROWS_WITH(schedule::multi_step(0.1f, {5, 5}, 0.5f),
                          Catch::Contains("strictly increasing (5 then 5)"));
        CHECK_THROWS_WITH(schedule::multi_step(0.1f, {5}, 0.0f), Catch::Contains("gamma"));
        CHECK_THROWS_WITH(schedule::cosine(-1.0f, 10), Catch::Contains("lr"));
        CHECK_THROWS_WITH(schedule::cosine(0.1f, 10, 0.2f), Catch::Contains("min_lr"));
        CHECK_THROWS_WITH(schedule::cosine(0.1f, 0), Catch::Contains("steps"));
        CHECK_THROWS_WITH(schedule::warmup(0, schedule::constant(0.1f)), Catch::Contains("steps"));
        CHECK_THROWS_WITH(schedule::warmup(5, Schedule{}), Catch::Contains("empty"));
        CHECK_THROWS_AS(schedule::constant(0.0f), ConfigError);
    }
}
