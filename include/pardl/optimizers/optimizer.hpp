// The optimizer contract: optimizers update the flat parameter vector from the flat, already
// averaged gradient. They work on slices so the executor can split the update over threads.
#pragma once

#include <charconv>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pardl/core/errors.hpp"

namespace pardl {

/// requires
///  - `reset(n)`: size and zero the optimizer state for n parameters (before the first step).
///  - `begin_step()`: called once per training step before any `update`.
///  - `update(params, grads, offset)`: updates params[i] from grads[i] for a slice starting at
///    element `offset` of the flat vector; slices of one step never overlap, so they may run
///    concurrently; the result must not depend on how the vector is sliced.
///  - `learning_rate()` / `set_learning_rate(lr)`: for schedules.
/// and may offer (ScalesGradient)
///  - `update(params, grads, offset, grad_scale)`: the same for the gradient grads[i] * grad_scale,
///    rounded to float before use, so exactly as if grads had been scaled first. The trainer hands
///    over the batch's summed gradient and 1/N; without this overload it scales the gradient in
///    place first, a pass over it (W-MLP's SGD update phase ran about 12% longer that way).
/// and (ClampsGradient)
///  - `update(params, grads, offset, grad_scale, limit)`: the same with each scaled gradient
///    element clamped to [-limit, limit], NaN kept (simd::clamp): clipping by value
///    (TrainerOptions::clip_grad_value) then costs no pass of its own.
template <class O>
concept Optimizer = requires(O& o, std::span<float> p, std::span<const float> g) {
    o.reset(std::size_t{});
    o.begin_step();
    o.update(p, g, std::size_t{});
    { o.learning_rate() } -> std::convertible_to<float>;
    o.set_learning_rate(0.1f);
    { o.name() } -> std::convertible_to<std::string>;
};

/// Whether optimizer O applies the gradient's scale itself (see Optimizer).
template <class O>
concept ScalesGradient = Optimizer<O> && requires(O& o, std::span<float> p, std::span<const float> g) {
    o.update(p, g, std::size_t{}, 1.0f);
};

/// Whether optimizer O also clamps the scaled gradient itself (see Optimizer).
template <class O>
concept ClampsGradient = ScalesGradient<O> && requires(O& o, std::span<float> p, std::span<const float> g) {
    o.update(p, g, std::size_t{}, 1.0f, 1.0f);
};

/// Whether optimizer O exposes what it remembers between steps, so that a checkpoint can hold it
/// and a resumed run continue exactly (Trainer::save / load):
///  - `state_buffers()`: its per-parameter buffers (after reset(n) each n long, element i belongs
///    to parameter i), always in the same order; none where it keeps nothing (SGD without momentum);
///  - `steps()` / `set_steps(s)`: how many steps have begun (Adam's bias correction counts them).
/// An optimizer without them still trains; its checkpoints hold the model alone.
template <class O>
concept SavesState = Optimizer<O> && requires(O& o) {
    { o.state_buffers() } -> std::convertible_to<std::vector<std::span<float>>>;
    { o.steps() } -> std::convertible_to<std::uint64_t>;
    o.set_steps(std::uint64_t{});
};

/// An optimizer's setting as checkpoint text (OptimizerSettings): the shortest text that reads
/// back as the same float (std::to_chars: "0.9" for 0.9f), whatever the C locale says.
inline std::string setting_text(float v) {
    char buf[32];
    const auto result = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, result.ptr);
}

/// Whether optimizer O names its options (`settings()`: (name, value) text pairs, e.g. momentum,
/// weight decay, Adam's betas and eps; not the learning rate, which a checkpoint holds as
/// progress). Trainer::save writes them into the checkpoint, and Trainer::load reports those that
/// differ from this optimizer's: a resumed run continues exactly only with the same ones. Names
/// and values of at most 255 printable bytes, names distinct from the trainer's own settings.
template <class O>
concept OptimizerSettings = Optimizer<O> && requires(const O& o) {
    { o.settings() } -> std::convertible_to<std::vector<std::pair<std::string, std::string>>>;
};

namespace detail {
/// Throws ConfigError unless lr is a finite number > 0, or >= 0 where zero_ok (a rate set during
/// training: a schedule may reach 0). An infinite rate would fail only as a diverged run.
inline void require_learning_rate(std::string_view optimizer, float lr, bool zero_ok) {
    PARDL_REQUIRE(std::isfinite(lr) && (zero_ok ? lr >= 0.0f : lr > 0.0f), ConfigError, optimizer,
                  ": learning rate must be a finite number ", zero_ok ? ">= 0" : "> 0", " (got ", lr, ")");
}
} // namespace detail

} // namespace pardl
