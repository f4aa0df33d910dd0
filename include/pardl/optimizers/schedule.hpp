// Learning-rate schedules: the rate as a function of the training step alone (TrainerOptions::
// schedule), so that every rank and worker computes the same rate without a message, and a run
// resumed from a checkpoint, which restores the step counter, continues on the same curve.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numbers>
#include <utility>
#include <vector>

#include "pardl/core/errors.hpp"

namespace pardl {

/// The learning rate of training step `step` (0 for the run's first; Trainer::steps_done counts
/// them over every epoch, and a checkpoint keeps the count). The trainer sets it before each
/// step's update; it must be finite and not negative.
using Schedule = std::function<float(std::uint64_t step)>;

/// The ready-made schedules: o.schedule = schedule::warmup(500, schedule::cosine(0.1f, 9380)).
namespace schedule {

namespace detail {
/// The checks every schedule makes of its starting rate (and a decaying one of its factor), each
/// message naming the schedule.
inline void require_rate(const char* schedule, float lr) {
    PARDL_REQUIRE(lr > 0.0f && std::isfinite(lr), ConfigError, schedule, ": lr must be > 0 (got ", lr, ")");
}
inline void require_gamma(const char* schedule, float gamma) {
    PARDL_REQUIRE(gamma > 0.0f && gamma <= 1.0f, ConfigError, schedule, ": gamma must be in (0, 1] (got ",
                  gamma, ")");
}
/// lr * gamma^decays, in double, rounded once to float: step_decay's and multi_step's rate.
inline float decayed(float lr, float gamma, std::uint64_t decays) {
    return static_cast<float>(lr * std::pow(static_cast<double>(gamma), static_cast<double>(decays)));
}
} // namespace detail

/// lr * gamma^floor(step / every): torch.optim.lr_scheduler.StepLR, counted in steps (every =
/// epochs * steps per epoch for a decay every few epochs).
inline Schedule step_decay(float lr, std::uint64_t every, float gamma) {
    detail::require_rate("step_decay", lr);
    PARDL_REQUIRE(every > 0, ConfigError, "step_decay: every must be at least 1 step");
    detail::require_gamma("step_decay", gamma);
    return [=](std::uint64_t step) { return detail::decayed(lr, gamma, step / every); };
}

/// lr * gamma^(how many milestones are <= step): torch.optim.lr_scheduler.MultiStepLR, counted in
/// steps. The milestones must be strictly increasing (PyTorch counts a repeated milestone twice;
/// here a repeat is refused as a likely typo).
inline Schedule multi_step(float lr, std::vector<std::uint64_t> milestones, float gamma) {
    detail::require_rate("multi_step", lr);
    PARDL_REQUIRE(!milestones.empty(), ConfigError, "multi_step: no milestones");
    for (std::size_t i = 1; i < milestones.size(); ++i)
        PARDL_REQUIRE(milestones[i] > milestones[i - 1], ConfigError,
                      "multi_step: the milestones must be strictly increasing (", milestones[i - 1], " then ",
                      milestones[i], ")");
    detail::require_gamma("multi_step", gamma);
    return [=, milestones = std::move(milestones)](std::uint64_t step) {
        const auto passed = std::upper_bound(milestones.begin(), milestones.end(), step) - milestones.begin();
        return detail::decayed(lr, gamma, static_cast<std::uint64_t>(passed));
    };
}

/// Cosine annealing from lr at step 0 to min_lr at step `steps`, and min_lr after it:
/// torch.optim.lr_scheduler.CosineAnnealingLR (T_max = steps, eta_min = min_lr) up to T_max,
/// which PyTorch's then climbs back from and this one does not.
inline Schedule cosine(float lr, std::uint64_t steps, float min_lr = 0.0f) {
    detail::require_rate("cosine", lr);
    PARDL_REQUIRE(steps > 0, ConfigError, "cosine: steps must be at least 1");
    PARDL_REQUIRE(min_lr >= 0.0f && min_lr <= lr, ConfigError, "cosine: min_lr must be in [0, lr] (got ",
                  min_lr, ")");
    return [=](std::uint64_t step) {
        if (step >= steps) return min_lr;
        const double phase = std::numbers::pi * static_cast<double>(step) / static_cast<double>(steps);
        return static_cast<float>(min_lr +
                                  (static_cast<double>(lr) - min_lr) * 0.5 * (1.0 + std::cos(phase)));
    };
}

/// A linear warm-up of `steps` steps, then `after` from its own step 0: the rate is
/// after(0) * (step + 1) / steps for step < steps (reaching after(0) at the last of them), then
/// after(step - steps). So `warmup(500, cosine(0.1f, n))` climbs to 0.1 in 500 steps and then
/// decays over n more, as PyTorch's SequentialLR of a LinearLR (start_factor 1/500, 499 steps)
/// and a CosineAnnealingLR with its milestone at step 500. The usual companion of a large global
/// batch (Goyal et al., "Accurate, Large Minibatch SGD"; Horovod's LearningRateWarmupCallback),
/// which data parallelism over many workers tends to bring.
inline Schedule warmup(std::uint64_t steps, Schedule after) {
    PARDL_REQUIRE(steps > 0, ConfigError, "warmup: steps must be at least 1");
    PARDL_REQUIRE(static_cast<bool>(after), ConfigError, "warmup: the schedule after it is empty");
    return [steps, after = std::move(after)](std::uint64_t step) {
        if (step >= steps) return after(step - steps);
        return static_cast<float>(static_cast<double>(after(0)) * static_cast<double>(step + 1) /
                                  static_cast<double>(steps));
    };
}

/// The same rate at every step: a warm-up's `after` for a constant rate.
inline Schedule constant(float lr) {
    detail::require_rate("constant", lr);
    return [lr](std::uint64_t) { return lr; };
}

} // namespace schedule
} // namespace pardl
