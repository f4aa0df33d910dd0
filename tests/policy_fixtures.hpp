// What the policy-equivalence tests share (test_policies, test_mpi, test_tensor_parallel): the
// small models they train, the optimizers, the tolerance every policy is held to, and `run`, one
// training run from a fixed seed. Each test file states only what it compares.
#pragma once

#include <pardl/pardl.hpp>
#include <pardl/testing/equivalence.hpp>

#include <cstddef>
#include <type_traits>
#include <utility>

namespace policy_fixtures {

using namespace pardl;

/// The bound on max |p - p_serial| / max |p_serial| after the tests' runs: summation-order
/// rounding stays far below it, a learning rate changed in its fourth digit exceeds it.
constexpr double tolerance = 1e-5;

using SmallMlp = Sequential<Input<12>, Dense<16>, Tanh, Dense<9>, ReLU, Dense<4>>;
using SmallCnn =
    Sequential<Input<1, 8, 8>, Conv2D<4, 3, 1, 1>, BatchNorm<>, ReLU, MaxPool2D<2>, Flatten, Dense<5>>;
/// Widths of several cache lines (48 = 3 lines, 40 = 2.5 lines), so that 2 and 3 tensor-parallel
/// threads split them unevenly, and a 5-class layer narrower than a line, which the first keeps.
using WideMlp = Sequential<Input<40>, Dense<48>, Tanh, Dense<40>, ReLU, Dense<5>>;
/// Convolutions before the first Dense, which a tensor-parallel team shares by rows (each member
/// in a workspace of its own) and whose gradients it sums (Sequential::team_prefix).
using ConvMlp = Sequential<Input<2, 8, 8>, Conv2D<4, 3, 1, 1>, ReLU, MaxPool2D<2>, Conv2D<6, 3, 1, 1>, ReLU,
                           Flatten, Dense<20>, ReLU, Dense<5>>;

inline SGD sgd() {
    return SGD({.lr = 0.05f, .momentum = 0.9f, .weight_decay = 1e-4f});
}
inline Adam adam() {
    return Adam({.lr = 3e-3f});
}
/// The optimizer a TEMPLATE_TEST_CASE over {SGD, Adam} runs with.
template <class Opt>
Opt make_opt() {
    if constexpr (std::is_same_v<Opt, SGD>)
        return sgd();
    else
        return adam();
}

/// `steps` steps of Model under Policy, global batch `batch`, `threads` workers (or team members),
/// from seed 1234 (clip_grad_norm > 0: gradient clipping by global norm).
template <class Policy, class Opt, class Model = SmallMlp>
testing::TrainedRun run(const Dataset& data, Opt opt, std::size_t batch, std::size_t threads,
                        std::size_t steps, std::size_t check_replicas = 0, Schedule schedule = {},
                        float clip_grad_norm = 0) {
    return testing::train_fresh<Model, Policy>(data, std::move(opt),
                                               {.batch = batch,
                                                .threads = threads,
                                                .steps = steps,
                                                .check_replicas = check_replicas,
                                                .schedule = std::move(schedule),
                                                .clip_grad_norm = clip_grad_norm});
}

} // namespace policy_fixtures
