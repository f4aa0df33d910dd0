// The public finite-difference gradient checker. It checks any bound layer, any loss and any
// Sequential model against central differences of a double-precision objective
// f = sum_ij r_ij * y_ij (r fixed and random), for input and parameter gradients. Users run it on
// their own layers exactly as pardl's tests do.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "pardl/core/errors.hpp"
#include "pardl/core/rng.hpp"
#include "pardl/layers/layer.hpp"
#include "pardl/losses/loss.hpp"
#include "pardl/tensor/buffer.hpp"

namespace pardl::testing {

struct GradcheckOptions {
    double step = 1e-2; ///< central-difference step h (float inputs: not much smaller)
    double rtol = 2e-2; ///< pass if |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|)
    double atol = 2e-3;
    std::size_t max_checks = 150; ///< entries checked per tensor (a seeded sample when larger)
    std::uint64_t seed = 7;
    bool training = true;    ///< StepContext::training for the forward passes
    float input_gap = 0.05f; ///< inputs are drawn with |x| >= gap to stay off kinks at 0
};

struct GradcheckReport {
    bool ok = true;
    std::size_t checked = 0;
    double max_error = 0; ///< largest |analytic - numeric| / (atol + rtol * max(|a|, |n|)); <= 1 passes
    std::string worst;    ///< where that was
    std::string failures; ///< the first few failing entries
    std::string summary() const {
        std::ostringstream os;
        os << (ok ? "ok" : "FAILED") << ": " << checked << " entries, worst ratio " << max_error << " at "
           << worst;
        if (!ok) os << "\n" << failures;
        return os.str();
    }
};

namespace detail {

inline void fill_inputs(std::span<float> v, Rng& rng, float gap) {
    for (float& x : v) {
        const float u = rng.uniform();
        const float mag = gap + (1.0f - gap) * u;
        x = rng.uniform() < 0.5f ? -mag : mag;
    }
}

/// Indices to check: all of them, or a seeded sample of max_checks.
inline std::vector<std::size_t> pick(std::size_t n, std::size_t max_checks, Rng& rng) {
    std::vector<std::size_t> idx;
    if (n <= max_checks) {
        for (std::size_t i = 0; i < n; ++i) idx.push_back(i);
    } else {
        for (std::size_t i = 0; i < max_checks; ++i) idx.push_back(static_cast<std::size_t>(rng.below(n)));
    }
    return idx;
}

class Comparator {
public:
    explicit Comparator(const GradcheckOptions& o) : o_(o) {}
    void compare(const std::string& what, std::size_t i, double analytic, double numeric) {
        const double tol = o_.atol + o_.rtol * std::max(std::abs(analytic), std::abs(numeric));
        const double ratio = std::abs(analytic - numeric) / tol;
        ++report_.checked;
        if (!(ratio <= report_.max_error) || report_.checked == 1) {
            if (ratio > report_.max_error || report_.checked == 1) {
                report_.max_error = ratio;
                report_.worst = what + "[" + std::to_string(i) + "]";
            }
        }
        if (!(ratio <= 1.0)) { // also catches NaN
            if (report_.ok || failures_ < 8) {
                std::ostringstream os;
                os << "  " << what << "[" << i << "]: analytic " << analytic << ", numeric " << numeric
                   << "\n";
                report_.failures += os.str();
                ++failures_;
            }
            report_.ok = false;
        }
    }
    GradcheckReport report() const { return report_; }

private:
    GradcheckOptions o_;
    GradcheckReport report_;
    int failures_ = 0;
};

inline double dot(std::span<const float> a, std::span<const float> b) {
    double s = 0;
    for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
    return s;
}

/// Throws ConfigError for a check that would compare nothing, or pass whatever it compared: no
/// rows, no entries to check, a step or tolerance that is not a finite number of the right sign.
/// Rows are capped (2^20): a check draws one sample, and the products sizing its buffers must not wrap.
inline void require_checkable(const char* check, std::size_t rows, const GradcheckOptions& o) {
    PARDL_REQUIRE(rows >= 1 && rows <= (std::size_t{1} << 20), ConfigError, check,
                  ": rows must be in [1, 2^20] (got ", rows, ")");
    PARDL_REQUIRE(o.max_checks >= 1, ConfigError, check, ": max_checks must be >= 1 (0 checks nothing)");
    PARDL_REQUIRE(std::isfinite(o.step) && o.step > 0, ConfigError, check,
                  ": step must be a finite number > 0 (got ", o.step, ")");
    PARDL_REQUIRE(std::isfinite(o.rtol) && std::isfinite(o.atol) && o.rtol >= 0 && o.atol >= 0 &&
                      o.rtol + o.atol > 0,
                  ConfigError, check, ": rtol and atol must be finite numbers >= 0, not both 0 (got ", o.rtol,
                  " and ", o.atol, ")");
}

/// Central difference of f with respect to v[i] (v is restored afterwards).
template <class F>
double central_difference(float& v, double h, F&& f) {
    const float orig = v;
    const auto hp = static_cast<float>(orig + h), hm = static_cast<float>(orig - h);
    v = hp;
    const double fp = f();
    v = hm;
    const double fm = f();
    v = orig;
    return (fp - fm) / (static_cast<double>(hp) - static_cast<double>(hm));
}

} // namespace detail

/// Checks a bound layer L (e.g. `Dense<5>::bind<Shape<7>>`) on `rows` random samples.
template <BoundLayer L>
GradcheckReport check_layer(std::size_t rows, GradcheckOptions o = {}) {
    detail::require_checkable("check_layer", rows, o);
    constexpr std::size_t in = L::input_shape::size, out = L::output_shape::size;
    Rng rng(o.seed, 1);
    AlignedBuffer<float> params(L::param_count), state(L::state_count), grads(L::param_count);
    AlignedBuffer<float> x(rows * in), y(rows * out), r(rows * out), dx(rows * in);
    L::initialize(params.span(), state.span(), rng);
    // Perturb initial parameters so that zero biases etc. do not hide mistakes.
    for (float& p : params) p += 0.1f * rng.normal();
    detail::fill_inputs(x.span(), rng, o.input_gap);
    for (float& v : r) v = rng.uniform(-1.0f, 1.0f);

    L layer(rows);
    StepContext ctx;
    ctx.training = o.training;
    ctx.seed = o.seed;
    ctx.global_rows = rows;
    const AlignedBuffer<float> state0 = [&] {
        AlignedBuffer<float> s(state.size());
        std::copy(state.begin(), state.end(), s.begin());
        return s;
    }();
    auto objective = [&]() {
        // State updates (running statistics) must not leak between evaluations.
        std::copy(state0.begin(), state0.end(), state.begin());
        LayerSlots s{params.span(), {}, state.span()};
        layer.forward(s, ConstMatrix{x.data(), rows, in}, Matrix{y.data(), rows, out}, ctx);
        return detail::dot(y.span(), r.span());
    };
    objective();
    LayerSlots s{params.span(), grads.span(), state.span()};
    layer.backward(s, ConstMatrix{x.data(), rows, in}, ConstMatrix{y.data(), rows, out},
                   ConstMatrix{r.data(), rows, out}, Matrix{dx.data(), rows, in}, ctx);

    detail::Comparator cmp(o);
    if constexpr (overwrites_grads_v<L>) {
        // The trainer's mode: the same backward must write the gradient over whatever the slice
        // held (NaN here), exactly as it adds it to zeros.
        AlignedBuffer<float> stale(L::param_count), dx2(rows * in);
        std::fill(stale.begin(), stale.end(), std::numeric_limits<float>::quiet_NaN());
        StepContext overwrite = ctx;
        overwrite.overwrite_grads = true;
        layer.backward(LayerSlots{params.span(), stale.span(), state.span()}, ConstMatrix{x.data(), rows, in},
                       ConstMatrix{y.data(), rows, out}, ConstMatrix{r.data(), rows, out},
                       Matrix{dx2.data(), rows, in}, overwrite);
        for (std::size_t i = 0; i < grads.size(); ++i) cmp.compare("param(overwrite)", i, stale[i], grads[i]);
    }
    for (std::size_t i : detail::pick(x.size(), o.max_checks, rng))
        cmp.compare("input", i, dx[i], detail::central_difference(x[i], o.step, objective));
    for (std::size_t i : detail::pick(params.size(), o.max_checks, rng))
        cmp.compare("param", i, grads[i], detail::central_difference(params[i], o.step, objective));
    return cmp.report();
}

/// Checks a loss's gradient on `rows` x `cols` random outputs with random labels / targets.
template <Loss LossT>
GradcheckReport check_loss(std::size_t rows, std::size_t cols, GradcheckOptions o = {}) {
    detail::require_checkable("check_loss", rows, o);
    PARDL_REQUIRE(cols >= 1 && cols <= (std::size_t{1} << 20), ConfigError,
                  "check_loss: cols must be in [1, 2^20] (got ", cols, ")");
    Rng rng(o.seed, 2);
    AlignedBuffer<float> z(rows * cols), dz(rows * cols), t(rows * cols);
    AlignedBuffer<std::int32_t> labels(rows);
    for (float& v : z) v = rng.uniform(-3.0f, 3.0f);
    for (float& v : t) v = rng.uniform(-1.0f, 1.0f);
    for (auto& l : labels) l = static_cast<std::int32_t>(rng.below(cols));
    const Targets targets{labels.span(), ConstMatrix{t.data(), rows, cols}};
    auto objective = [&]() { return LossT::loss(ConstMatrix{z.data(), rows, cols}, targets); };
    const double f =
        LossT::forward_backward(ConstMatrix{z.data(), rows, cols}, targets, Matrix{dz.data(), rows, cols});
    detail::Comparator cmp(o);
    cmp.compare("loss-consistency", 0, f, objective());
    for (std::size_t i : detail::pick(z.size(), o.max_checks, rng))
        cmp.compare("output", i, dz[i], detail::central_difference(z[i], o.step, objective));
    return cmp.report();
}

/// Checks a whole Sequential model with a loss, end to end (parameters and input).
template <class Model, Loss LossT>
GradcheckReport check_model(std::size_t rows, GradcheckOptions o = {}) {
    detail::require_checkable("check_model", rows, o);
    constexpr std::size_t in = Model::input_shape::size, out = Model::output_shape::size;
    Rng rng(o.seed, 3);
    AlignedBuffer<float> params(Model::param_count), state(Model::state_count), grads(Model::param_count);
    AlignedBuffer<float> x(rows * in), dx(rows * in), t(rows * out);
    AlignedBuffer<std::int32_t> labels(rows);
    Model::initialize(params.span(), state.span(), o.seed);
    detail::fill_inputs(x.span(), rng, o.input_gap);
    for (float& v : t) v = rng.uniform(-1.0f, 1.0f);
    for (auto& l : labels) l = static_cast<std::int32_t>(rng.below(out));
    const Targets targets{labels.span(), ConstMatrix{t.data(), rows, out}};
    typename Model::Workspace ws(rows);
    StepContext ctx;
    ctx.training = o.training;
    ctx.seed = o.seed;
    ctx.global_rows = rows;
    AlignedBuffer<float> state0(state.size());
    std::copy(state.begin(), state.end(), state0.begin());
    auto objective = [&]() {
        std::copy(state0.begin(), state0.end(), state.begin());
        const ConstMatrix y =
            Model::forward(params.span(), state.span(), ConstMatrix{x.data(), rows, in}, ws, ctx);
        return LossT::loss(y, targets);
    };
    {
        std::copy(state0.begin(), state0.end(), state.begin());
        const ConstMatrix y =
            Model::forward(params.span(), state.span(), ConstMatrix{x.data(), rows, in}, ws, ctx);
        LossT::forward_backward(y, targets, ws.output_gradient());
        Model::backward(params.span(), grads.span(), state.span(), ConstMatrix{x.data(), rows, in}, ws, ctx,
                        Matrix{dx.data(), rows, in});
    }
    detail::Comparator cmp(o);
    for (std::size_t i : detail::pick(x.size(), o.max_checks, rng))
        cmp.compare("input", i, dx[i], detail::central_difference(x[i], o.step, objective));
    for (std::size_t i : detail::pick(params.size(), o.max_checks, rng))
        cmp.compare("param", i, grads[i], detail::central_difference(params[i], o.step, objective));
    return cmp.report();
}

} // namespace pardl::testing
