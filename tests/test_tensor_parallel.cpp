// TensorParallel (model parallelism inside a process): the threads split every layer instead of
// the batch. Member t multiplies its share of a Dense layer's inputs by its rows of W and the
// members' parts are summed, so the products are summed in parts, as data parallelism sums the
// batch in parts: the team must reproduce Serial's parameters to rounding (the same 1e-5 relative
// bound as the data-parallel policies), and a team of one exactly.
#include <catch2/catch.hpp>

#include <pardl/pardl.hpp>
#include <pardl/policies/tensor_parallel.hpp>
#include <pardl/testing/equivalence.hpp>

#include "policy_fixtures.hpp"

#include <atomic>
#include <cmath>
#include <cstddef>
#include <vector>

using namespace pardl;
using namespace policy_fixtures;

namespace {

// Row-split layers between them: pooling with the ReLU it runs, Flatten and Dropout (keyed by
// the global row, so splitting rows must not change its mask), a Sigmoid split by columns.
using PoolMlp = Sequential<Input<2, 8, 8>, MaxPool2D<2>, ReLU, Flatten, Dense<40>, Dropout<200>, Sigmoid,
                           Dense<36>, ReLU, ReLU, Dense<5>>;
static_assert(ConvMlp::team_prefix == 6 && ConvMlp::team_splittable && PoolMlp::team_prefix == 0);

/// Trains Model on `data` with Opt under Serial and under TensorParallel teams of 1 to 4: a team
/// of one must give Serial's parameters exactly, larger teams within the tolerance, with the
/// same epoch losses to 1e-5.
template <class Model, class Opt>
void check_team_reproduces_serial(const Dataset& data, std::size_t batch) {
    const auto serial = run<Serial, Opt, Model>(data, make_opt<Opt>(), batch, 1, 25);
    {
        INFO("batch " << batch << ", a team of one: the serial step itself");
        const auto one = run<TensorParallel, Opt, Model>(data, make_opt<Opt>(), batch, 1, 25);
        CHECK(one.params == serial.params);
    }
    for (std::size_t threads : {2, 3, 4}) {
        INFO("batch " << batch << ", threads " << threads);
        const auto team = run<TensorParallel, Opt, Model>(data, make_opt<Opt>(), batch, threads, 25);
        CHECK(testing::max_relative_difference(team.params, serial.params) <= tolerance);
        for (std::size_t s = 0; s < serial.losses.size(); ++s)
            CHECK(team.losses[s] == Approx(serial.losses[s]).epsilon(1e-5));
    }
}

} // namespace

TEMPLATE_TEST_CASE("TensorParallel reproduces Serial", "[policy][tensor]", SGD, Adam) {
    const Dataset blobs = make_blobs(203, 40, 5, 17); // the last batch of an epoch is short
    const Dataset images = make_images(90, 2, 8, 8, 5, 23);
    const std::size_t batch = GENERATE(50, 7);
    check_team_reproduces_serial<WideMlp, TestType>(blobs, batch);
    check_team_reproduces_serial<PoolMlp, TestType>(images, batch);
}

TEMPLATE_TEST_CASE("TensorParallel reproduces Serial with convolutions shared by rows", "[policy][tensor]",
                   SGD, Adam) {
    const Dataset images = make_images(90, 2, 8, 8, 5, 29);
    // 7: the last batch has 6 rows; 3: a team of 4 has a member without rows.
    const std::size_t batch = GENERATE(50, 7, 3);
    check_team_reproduces_serial<ConvMlp, TestType>(images, batch);
}

TEST_CASE("line_share gives every column to exactly one member, in whole cache lines", "[policy][tensor]") {
    for (std::size_t width : {1, 10, 16, 40, 48, 128, 256, 257}) {
        for (std::size_t parts : {1, 2, 3, 4, 16}) {
            std::size_t next = 0;
            for (std::size_t p = 0; p < parts; ++p) {
                const Range r = line_share(width, p, parts);
                INFO("width " << width << ", part " << p << " of " << parts);
                CHECK(r.begin == next);
                CHECK((r.begin % 16 == 0 || r.empty()));
                next = r.end;
            }
            CHECK(next == width);
        }
    }
}

TEMPLATE_TEST_CASE("TensorParallel's members own disjoint parameters that cover the model",
                   "[policy][tensor]", WideMlp, ConvMlp) {
    using Model = TestType;
    for (std::size_t parts : {1, 2, 3}) {
        std::vector<int> owner(Model::param_count, -1);
        for (std::size_t p = 0; p < parts; ++p)
            Model::for_each_owned(p, parts, [&](std::size_t first, std::size_t count) {
                for (std::size_t i = first; i < first + count; ++i) {
                    CHECK(owner[i] == -1);
                    owner[i] = static_cast<int>(p);
                }
            });
        std::size_t owned = 0;
        for (int o : owner) owned += o >= 0 ? 1 : 0;
        CHECK(owned == Model::learnable_param_count);
    }
}

TEST_CASE("TensorParallel evaluates like Serial and names itself", "[policy][tensor]") {
    const Dataset data = make_blobs(157, 40, 5, 8);
    TrainerOptions o;
    o.batch = 32;
    o.log = false;
    Trainer<WideMlp, SoftmaxCrossEntropy, SGD, Serial> serial(SGD({.lr = 0.05f}), o);
    o.threads = 3;
    Trainer<WideMlp, SoftmaxCrossEntropy, SGD, TensorParallel> team(SGD({.lr = 0.05f}), o);
    const Evaluation a = serial.evaluate(data), b = team.evaluate(data);
    CHECK(b.samples == 157);
    CHECK(b.loss == Approx(a.loss).epsilon(1e-6));
    CHECK(b.accuracy == a.accuracy);
    CHECK(TensorParallel::name() == "tensor");
    CHECK(team.threads() == 3);
    // With convolutions shared by rows the team's first workspace keeps the serial blocking.
    const Dataset images = make_images(77, 2, 8, 8, 5, 41);
    o.threads = 1;
    Trainer<ConvMlp, SoftmaxCrossEntropy, SGD, Serial> serial_cnn(SGD({.lr = 0.05f}), o);
    o.threads = 3;
    Trainer<ConvMlp, SoftmaxCrossEntropy, SGD, TensorParallel> team_cnn(SGD({.lr = 0.05f}), o);
    const Evaluation c = serial_cnn.evaluate(images), d = team_cnn.evaluate(images);
    CHECK(d.samples == 77);
    CHECK(d.loss == Approx(c.loss).epsilon(1e-6));
    CHECK(d.accuracy == c.accuracy);
}

TEST_CASE("An exception in a team phase surfaces after the region, and no member hangs", "[policy][tensor]") {
    TensorParallelExecutor exec(3);
    std::atomic<int> later_phases{0};
    const auto body = [&](TeamMember& team) {
        team.phase([&] {
            if (team.index() == 1) throw DataError("member 1 failed");
        });
        team.phase([&] { ++later_phases; });
    };
    CHECK_THROWS_WITH(exec.run_team(body), Catch::Contains("member 1 failed"));
    CHECK(later_phases == 0);
}

TEST_CASE("Every team member computes in the caller's subnormal mode", "[policy][tensor]") {
    TensorParallelExecutor exec(3);
    for (const SubnormalMode mode : {SubnormalMode::flushed(), SubnormalMode::kept()}) {
        const ScopedSubnormalMode caller(mode);
        std::atomic<int> in_mode{0};
        exec.run_team([&](TeamMember&) { in_mode += SubnormalMode::current() == mode; });
        INFO("flushing " << mode.flushes());
        CHECK(in_mode == 3);
    }
}

TEST_CASE("A bad dataset index in a team step is a clear error", "[policy][tensor]") {
    const Dataset data = make_blobs(20, 40, 5, 3);
    TrainerOptions o;
    o.batch = 8;
    o.threads = 2;
    o.log = false;
    Trainer<WideMlp, SoftmaxCrossEntropy, SGD, TensorParallel> team(SGD({.lr = 0.05f}), o);
    const std::vector<std::size_t> bad{0, 1, 2, 3, 4, 5, 6, 999};
    CHECK_THROWS_AS(team.step(data, bad), Error);
    const std::vector<std::size_t> good{0, 1, 2, 3, 4, 5, 6, 7};
    CHECK(std::isfinite(team.step(data, good).loss));
}
