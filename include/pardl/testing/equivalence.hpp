// Policy-equivalence helpers: train the same model from the same seed on the same global batches
// under two policies and measure how far the parameters drifted apart. Serial semantics are the
// contract, so every policy must stay within summation-order rounding of Serial.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "pardl/data/dataset.hpp"
#include "pardl/data/loader.hpp"
#include "pardl/losses/softmax_cross_entropy.hpp"
#include "pardl/train/trainer.hpp"

namespace pardl::testing {

/// max_i |a_i - b_i| / max_i |b_i|: the drift of `a` from the reference `b`.
inline double max_relative_difference(std::span<const float> a, std::span<const float> b) {
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
        diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
        scale = std::max(scale, std::abs(static_cast<double>(b[i])));
    }
    if (a.size() != b.size()) return INFINITY;
    return scale > 0 ? diff / scale : diff;
}

/// Runs `steps` training steps (cycling through epochs of `data` as needed) and returns the
/// final parameters and the per-step mean losses.
struct TrainedRun {
    std::vector<float> params;
    std::vector<double> losses;
};

template <class TrainerT>
TrainedRun train_steps(TrainerT& trainer, const Dataset& data, std::size_t steps) {
    const TrainerOptions& o = trainer.options();
    BatchLoader loader(data, o.batch, o.seed, /*shuffle=*/true, /*drop_last=*/false);
    TrainedRun run;
    std::size_t epoch = 0, b = loader.batches_per_epoch();
    for (std::size_t s = 0; s < steps; ++s) {
        if (b == loader.batches_per_epoch()) {
            loader.start_epoch(++epoch);
            b = 0;
        }
        run.losses.push_back(trainer.step(data, loader.batch_indices(b++)).loss);
    }
    const auto p = trainer.parameters();
    run.params.assign(p.begin(), p.end());
    return run;
}

/// What an equivalence run varies besides its policy, model and optimizer.
struct RunSpec {
    std::size_t batch = 32;         ///< global batch
    std::size_t threads = 1;        ///< TrainerOptions::threads: workers, or a tensor-parallel team
    std::size_t steps = 10;         ///< training steps, cycling through epochs of the data
    std::uint64_t seed = 1234;      ///< initial parameters and batch order
    std::size_t check_replicas = 0; ///< TrainerOptions::check_replicas (distributed policies)
    Schedule schedule{};            ///< TrainerOptions::schedule
    float clip_grad_norm = 0;       ///< TrainerOptions::clip_grad_norm
    float clip_grad_value = 0;      ///< TrainerOptions::clip_grad_value
};

/// Trains a freshly initialised Model under Policy as `spec` says and returns what train_steps
/// does: two calls that differ only in Policy (and threads) must agree to rounding.
template <class Model, class Policy, class Opt, class Loss = SoftmaxCrossEntropy>
TrainedRun train_fresh(const Dataset& data, Opt opt, const RunSpec& spec) {
    TrainerOptions o;
    o.batch = spec.batch;
    o.seed = spec.seed;
    o.threads = spec.threads;
    o.check_replicas = spec.check_replicas;
    o.schedule = spec.schedule;
    o.clip_grad_norm = spec.clip_grad_norm;
    o.clip_grad_value = spec.clip_grad_value;
    o.log = false;
    Trainer<Model, Loss, Opt, Policy> trainer(std::move(opt), o);
    return train_steps(trainer, data, spec.steps);
}

} // namespace pardl::testing
