// Policy equivalence in one process: OpenMP with 2 and 3 threads must reproduce Serial's
// parameters (same seed, same global batches) up to summation-order rounding: <= 1e-5 relative.
#include <catch2/catch.hpp>

#include <pardl/pardl.hpp>
#include <pardl/policies/openmp.hpp>
#include <pardl/policies/tensor_parallel.hpp>
#include <pardl/testing/equivalence.hpp>

#include "checkpoint_layout.hpp"
#include "policy_fixtures.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace pardl;
using namespace policy_fixtures;

namespace {

/// SGD behind the plain Optimizer interface, without the scaled update (not ScalesGradient): the
/// trainer then scales each gradient in place before it calls update.
struct PlainSgd {
    SGD inner;
    void reset(std::size_t n) { inner.reset(n); }
    void begin_step() { inner.begin_step(); }
    void update(std::span<float> p, std::span<const float> g, std::size_t offset) {
        inner.update(p, g, offset);
    }
    float learning_rate() const { return inner.learning_rate(); }
    void set_learning_rate(float lr) { inner.set_learning_rate(lr); }
    std::string name() const { return inner.name(); }
};
static_assert(Optimizer<PlainSgd> && !ScalesGradient<PlainSgd> && ScalesGradient<SGD>);

/// SGD that scales the gradient as it reads it but does not clamp it: clipping by value then
/// clamps in place first and hands it a scale of 1.
struct ScalingOnlySgd : PlainSgd {
    using PlainSgd::update;
    void update(std::span<float> p, std::span<const float> g, std::size_t offset, float scale) {
        inner.update(p, g, offset, scale);
    }
};
static_assert(ScalesGradient<ScalingOnlySgd> && !ClampsGradient<ScalingOnlySgd>);
static_assert(ClampsGradient<SGD> && ClampsGradient<Adam> && ClampsGradient<AdamW>);

} // namespace

TEST_CASE("An optimizer that does not scale the gradient itself trains to the same bits",
          "[policy][openmp]") {
    // Batch 50 of 203 rows: each epoch ends with 3 rows, whose 1/3 rounds.
    const Dataset data = make_blobs(203, 12, 4, 99);
    for (std::size_t threads : {1, 2}) {
        const auto fused = run<OpenMP>(data, sgd(), 50, threads, 25);
        const auto plain = run<OpenMP>(data, PlainSgd{sgd()}, 50, threads, 25);
        INFO("threads " << threads);
        CHECK(plain.params == fused.params);
        CHECK(plain.losses == fused.losses);
        // Clipping (a bound every step exceeds) scales the gradient in place for it alike.
        const auto fused_clipped = run<OpenMP>(data, sgd(), 50, threads, 25, 0, {}, 1e-3f);
        const auto plain_clipped = run<OpenMP>(data, PlainSgd{sgd()}, 50, threads, 25, 0, {}, 1e-3f);
        CHECK(plain_clipped.params == fused_clipped.params);
        CHECK(testing::max_relative_difference(plain_clipped.params, plain.params) > 100 * tolerance);
    }
}

TEMPLATE_TEST_CASE("OpenMP reproduces Serial", "[policy][openmp]", SGD, Adam) {
    const Dataset data = make_blobs(203, 12, 4, 99); // 203 rows: the last batch of each epoch is short
    const std::size_t batch = GENERATE(50, 7);
    const auto serial = run<Serial>(data, make_opt<TestType>(), batch, 1, 25);
    for (std::size_t threads : {2, 3}) {
        const auto omp = run<OpenMP>(data, make_opt<TestType>(), batch, threads, 25);
        INFO("batch " << batch << ", threads " << threads);
        CHECK(testing::max_relative_difference(omp.params, serial.params) <= tolerance);
        for (std::size_t s = 0; s < serial.losses.size(); ++s)
            CHECK(omp.losses[s] == Approx(serial.losses[s]).epsilon(1e-5));
    }
}

TEMPLATE_TEST_CASE("Serial with W workers taken in turn is OpenMP with W threads, bit for bit",
                   "[policy][openmp]", SGD, Adam) {
    // The only difference between a parallel run and Serial is the order of the sums over the
    // batch; Serial with the same worker split must therefore match exactly, not to a tolerance.
    const Dataset data = make_blobs(203, 12, 4, 99);
    const std::size_t batch = GENERATE(50, 7);
    for (std::size_t workers : {2, 3}) {
        const auto serial = run<Serial>(data, make_opt<TestType>(), batch, workers, 25);
        const auto omp = run<OpenMP>(data, make_opt<TestType>(), batch, workers, 25);
        INFO("batch " << batch << ", workers " << workers);
        CHECK(omp.params == serial.params);
        CHECK(omp.losses == serial.losses);
    }
    // ... and a different split is a different (rounding-level) computation.
    const auto one = run<Serial>(data, make_opt<TestType>(), batch, 1, 25);
    const auto two = run<Serial>(data, make_opt<TestType>(), batch, 2, 25);
    CHECK(one.params != two.params);
    CHECK(testing::max_relative_difference(two.params, one.params) <= tolerance);
}

TEST_CASE("Parameters changed between steps reach every thread's copy of them", "[policy][openmp]") {
    // OpenMP threads compute on private copies of the parameters, which a step refreshes only
    // where another thread updated them (Trainer's Worker::param_copy). A write through
    // parameters() and a checkpoint loaded between steps must still reach all of every copy:
    // the run must stay Serial's with the same worker split, bit for bit.
    const Dataset data = make_blobs(203, 12, 4, 99);
    const std::filesystem::path file =
        std::filesystem::temp_directory_path() /
        ("pardl_param_copy_" + std::to_string(std::random_device{}()) + ".ckpt");
    auto scenario = [&](auto& trainer) {
        BatchLoader loader(data, 16, 7, /*shuffle=*/true, /*drop_last=*/false);
        loader.start_epoch(1);
        std::size_t b = 0;
        auto steps = [&](std::size_t count) {
            for (std::size_t s = 0; s < count; ++s) trainer.step(data, loader.batch_indices(b++));
        };
        steps(3);
        trainer.save(file);
        for (float& v : trainer.parameters()) v *= 0.5f;
        steps(3);
        trainer.load(file);
        steps(3);
        const auto p = trainer.parameters();
        return std::vector<float>(p.begin(), p.end());
    };
    TrainerOptions o;
    o.batch = 16;
    o.seed = 5;
    o.threads = 2;
    o.log = false;
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> serial(sgd(), o);
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, OpenMP> omp(sgd(), o);
    const std::vector<float> expected = scenario(serial);
    CHECK(scenario(omp) == expected);
    // ... and the scenario is not blind to the writes: without them the run ends elsewhere.
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, OpenMP> plain(sgd(), o);
    BatchLoader loader(data, 16, 7, /*shuffle=*/true, /*drop_last=*/false);
    loader.start_epoch(1);
    for (std::size_t s = 0; s < 9; ++s) plain.step(data, loader.batch_indices(s));
    const auto p = plain.parameters();
    CHECK(std::vector<float>(p.begin(), p.end()) != expected);
    std::filesystem::remove(file);
}

TEST_CASE("Serial workers taken in turn refuse synchronized batch norm with a clear error", "[policy]") {
    const Dataset data = make_images(16, 1, 8, 8, 5, 3);
    REQUIRE_NOTHROW(run<Serial, SGD, SmallCnn>(data, sgd(), 8, 1, 1));
    CHECK_THROWS_WITH((run<Serial, SGD, SmallCnn>(data, sgd(), 8, 2, 1)),
                      Catch::Contains("cannot synchronise inside a step"));
}

TEST_CASE("A policy that changed the math would be caught", "[policy]") {
    // Guard against a vacuous tolerance: one different learning rate must exceed it.
    const Dataset data = make_blobs(120, 12, 4, 5);
    const auto a = run<Serial>(data, SGD({.lr = 0.05f, .momentum = 0.9f}), 40, 1, 10);
    const auto b = run<Serial>(data, SGD({.lr = 0.0501f, .momentum = 0.9f}), 40, 1, 10);
    CHECK(testing::max_relative_difference(a.params, b.params) > tolerance);
    // The same on the model the tensor-parallel tests hold to this tolerance.
    const Dataset wide = make_blobs(203, 40, 5, 17);
    const auto c = run<Serial, SGD, WideMlp>(wide, SGD({.lr = 0.05f, .momentum = 0.9f}), 50, 1, 25);
    const auto d = run<Serial, SGD, WideMlp>(wide, SGD({.lr = 0.0501f, .momentum = 0.9f}), 50, 1, 25);
    CHECK(testing::max_relative_difference(c.params, d.params) > tolerance);
}

TEST_CASE("More threads than rows leaves some workers idle, and the step is still exact",
          "[policy][openmp]") {
    const Dataset data = make_blobs(10, 12, 4, 3);
    const auto serial = run<Serial>(data, sgd(), 4, 1, 6); // batches of 4, 4, 2 rows
    const auto omp = run<OpenMP>(data, sgd(), 4, 3, 6);
    CHECK(testing::max_relative_difference(omp.params, serial.params) <= tolerance);
}

TEST_CASE("Evaluation is identical under OpenMP and counts every sample once", "[policy][openmp]") {
    const Dataset data = make_blobs(157, 12, 4, 8);
    TrainerOptions o;
    o.batch = 32;
    o.log = false;
    o.threads = 1;
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> serial(sgd(), o);
    o.threads = 3;
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, OpenMP> omp(sgd(), o);
    const Evaluation a = serial.evaluate(data), b = omp.evaluate(data);
    CHECK(a.samples == 157);
    CHECK(b.samples == 157);
    CHECK(b.loss == Approx(a.loss).epsilon(1e-6));
    CHECK(b.accuracy == a.accuracy);
}

TEST_CASE("An exception in one worker thread surfaces after the parallel region", "[policy][openmp]") {
    OpenMPExecutor exec(3);
    CHECK_THROWS_WITH(exec.run(9,
                               [](std::size_t w, Range) {
                                   if (w == 2) throw DataError("worker 2 failed");
                               }),
                      Catch::Contains("worker 2 failed"));
}

TEST_CASE("Every thread of an OpenMP team computes in its caller's subnormal mode", "[policy][openmp]") {
    // Flushed first, then kept: a thread that flushed in the last region must not go on flushing.
    OpenMPExecutor exec(3);
    for (const SubnormalMode mode : {SubnormalMode::flushed(), SubnormalMode::kept()}) {
        const ScopedSubnormalMode caller(mode);
        std::vector<int> in_mode(6, 0);
        exec.run(
            3, [&](std::size_t w, Range) { in_mode[w] = SubnormalMode::current() == mode; }, {}, NoFinish{});
        exec.for_chunks(3,
                        [&](Range) { in_mode[3 + omp_get_thread_num()] = SubnormalMode::current() == mode; });
        INFO("flushing " << mode.flushes());
        CHECK(in_mode == std::vector<int>(6, 1));
    }
}

namespace {
/// A layer without parameters that passes its input on and counts the forward passes run with
/// subnormals flushed and kept: it sees the mode of the thread that runs it.
struct ModeProbe : LayerSpecBase {
    static inline std::atomic<int> flushed{0}, kept{0};
    template <ShapeType In>
    static constexpr bool accepts = true;
    static std::string name() { return "ModeProbe"; }
    template <ShapeType In>
    struct bind {
        using input_shape = In;
        using output_shape = In;
        static constexpr std::size_t param_count = 0;
        static constexpr std::size_t state_count = 0;
        static std::string name() { return "ModeProbe"; }
        explicit bind(std::size_t) {}
        static void initialize(std::span<float>, std::span<float>, Rng&) {}
        void forward(const LayerSlots&, ConstMatrix x, Matrix y, const StepContext&) {
            ++(SubnormalMode::current().flushes() ? flushed : kept);
            for (std::size_t r = 0; r < x.rows; ++r) std::copy_n(x.row(r), In::size, y.row(r));
        }
        void backward(const LayerSlots&, ConstMatrix, ConstMatrix, ConstMatrix dy, Matrix dx,
                      const StepContext&) {
            if (dx.empty()) return;
            for (std::size_t r = 0; r < dy.rows; ++r) std::copy_n(dy.row(r), In::size, dx.row(r));
        }
    };
};
} // namespace

TEST_CASE("Steps and evaluations flush subnormals on every worker unless told not to, and restore the "
          "caller's mode",
          "[policy][openmp]") {
    using Probed = Sequential<Input<12>, ModeProbe, Dense<4>>;
    const Dataset data = make_blobs(20, 12, 4, 5); // one batch, also for the evaluation
    std::vector<std::size_t> batch(20);
    std::iota(batch.begin(), batch.end(), std::size_t{0});
    for (const bool flush : {true, false}) {
        TrainerOptions o;
        o.batch = 20;
        o.log = false;
        o.threads = 2;
        o.flush_subnormals = flush;
        Trainer<Probed, SoftmaxCrossEntropy, SGD, OpenMP> omp(sgd(), o);
        Trainer<Probed, SoftmaxCrossEntropy, SGD, Serial> serial(sgd(), o); // 2 workers in turn
        ModeProbe::flushed = 0;
        ModeProbe::kept = 0;
        omp.step(data, batch);
        serial.step(data, batch);
        omp.evaluate(data);
        INFO("flush_subnormals " << flush);
        CHECK(ModeProbe::flushed == (flush ? 6 : 0)); // 2 workers x (2 steps + 1 evaluation)
        CHECK(ModeProbe::kept == (flush ? 0 : 6));
        CHECK_FALSE(SubnormalMode::current().flushes());
    }
}

TEST_CASE("OpenMP gradient reduction sums worker buffers in a fixed order", "[policy][openmp]") {
    OpenMPExecutor exec(3);
    std::vector<float> b0(1000), b1(1000), b2(1000);
    std::vector<std::span<float>> spans{b0, b1, b2};
    exec.run(
        30,
        [&](std::size_t w, Range r) {
            CHECK(r == balanced_range(30, w, 3));
            for (std::size_t i = 0; i < 1000; ++i)
                spans[w][i] = static_cast<float>(w + 1) * static_cast<float>(i);
        },
        std::span<const std::span<float>>(spans));
    for (std::size_t i = 0; i < 1000; ++i) REQUIRE(b0[i] == 6.0f * static_cast<float>(i));
}

TEST_CASE("A fused finish gets every chunk's sum once, from the worker that owns it, in order",
          "[policy][openmp]") {
    // With a finish the executor hands each chunk's sum to it instead of writing buffers[0]: the
    // same bits as the plain sum, every element once, each worker's chunks one contiguous range
    // in increasing order (what the trainer's parameter copies rely on), no buffer written.
    const std::size_t n = 2 * reduction_block + 777; // 3 blocks, the last one short
    for (std::size_t workers : {1, 2, 3, 5}) {
        INFO(workers << " workers");
        std::vector<std::vector<float>> data(workers, std::vector<float>(n));
        for (std::size_t w = 0; w < workers; ++w)
            for (std::size_t i = 0; i < n; ++i) data[w][i] = 0.1f * static_cast<float>(w + 1) + 1e-3f * i;
        const auto spans_of = [&](std::vector<std::vector<float>>& d) {
            return std::vector<std::span<float>>(d.begin(), d.end());
        };
        auto plain = data;
        const auto plain_spans = spans_of(plain);
        OpenMPExecutor(workers).run(
            0, [](std::size_t, Range) {}, std::span<const std::span<float>>(plain_spans));

        auto fused = data;
        const auto fused_spans = spans_of(fused);
        std::vector<float> got(n, -1.0f);
        std::vector<int> seen(n, 0);
        std::vector<Range> owned(workers);
        bool in_order = true;
        OpenMPExecutor(workers).run(
            0, [](std::size_t, Range) {}, std::span<const std::span<float>>(fused_spans),
            [&](std::size_t w, Range r, float* sums) {
                // Workers write disjoint elements of got/seen and only their own owned[w].
                for (std::size_t i = r.begin; i < r.end; ++i) {
                    got[i] = sums[i - r.begin];
                    ++seen[i];
                }
                if (!owned[w].empty() && owned[w].end != r.begin) in_order = false;
                owned[w] = owned[w].empty() ? r : Range{owned[w].begin, r.end};
            });
        CHECK(in_order);
        CHECK(std::count(seen.begin(), seen.end(), 1) == static_cast<std::ptrdiff_t>(n));
        CHECK(got == plain[0]);
        if (workers > 1) CHECK(fused == data); // the buffers are only read

        // With a `then`: whole blocks per worker, whatever the worker count (the clipping norm's
        // partial sums, one per block, then have the same bits under every thread count), and
        // each worker that finished chunks gets their range once, after every finish of the call
        // has returned; with more workers than blocks, some get none.
        std::atomic<std::size_t> finished{0};
        std::atomic<bool> after_all{true};
        std::vector<Range> blocks_owned(workers), then_got(workers);
        std::vector<int> then_calls(workers, 0);
        OpenMPExecutor(workers).run(
            0, [](std::size_t, Range) {}, std::span<const std::span<float>>(fused_spans),
            [&](std::size_t w, Range r, float*) {
                std::this_thread::sleep_for(std::chrono::milliseconds(1)); // a slow finish
                blocks_owned[w] = blocks_owned[w].empty() ? r : Range{blocks_owned[w].begin, r.end};
                finished += r.size();
            },
            [&](std::size_t w, Range r) {
                if (finished.load() != n) after_all = false;
                then_got[w] = r;
                ++then_calls[w];
            });
        CHECK(after_all.load());
        CHECK(then_got == blocks_owned);
        for (std::size_t w = 0; w < workers; ++w) {
            CHECK(blocks_owned[w].begin % reduction_block == 0);
            CHECK(then_calls[w] == (blocks_owned[w].empty() ? 0 : 1));
        }
        CHECK(std::count(then_calls.begin(), then_calls.end(), 1) ==
              static_cast<std::ptrdiff_t>(std::min<std::size_t>(workers, 3))); // 3 blocks
    }
}

TEST_CASE("Workers taken in turn: one finish pass over the whole gradient, then one `then`", "[policy]") {
    const std::size_t n = 2 * reduction_block + 5;
    std::vector<std::vector<float>> data(3, std::vector<float>(n, 1.0f));
    std::vector<std::span<float>> spans(data.begin(), data.end());
    std::size_t finished = 0;
    std::vector<Range> then_got;
    SerialExecutor(3).run(
        0, [](std::size_t, Range) {}, std::span<const std::span<float>>(spans),
        [&](std::size_t w, Range r, float* sums) {
            CHECK(w == 0);
            CHECK(r.begin == finished); // in order, from 0
            CHECK(sums[0] == 3.0f);
            finished += r.size();
        },
        [&](std::size_t w, Range r) {
            CHECK(w == 0);
            CHECK(finished == n);
            then_got.push_back(r);
        });
    CHECK(then_got == std::vector<Range>{Range{0, n}});
}

TEST_CASE("Executors refuse more than 4096 workers and name what they run", "[policy]") {
    using Catch::Matchers::Contains;
    CHECK(SerialExecutor(4096).workers() == 4096);
    CHECK_THROWS_WITH(
        SerialExecutor(4097),
        Contains("workers taken in turn on one thread (Serial's, or each MPI rank's) must be at "
                 "most 4096 (got 4097)"));
    CHECK_THROWS_WITH(OpenMPExecutor(5000), Contains("OpenMP: thread count must be in [1, 4096]"));
}

TEST_CASE("A CNN with synchronized batch norm under OpenMP reproduces Serial", "[policy][openmp][cnn]") {
    const Dataset data = make_images(90, 1, 8, 8, 5, 31); // batch 20: the last batch has 10 rows
    const auto serial = run<Serial, SGD, SmallCnn>(data, sgd(), 20, 1, 20);
    for (std::size_t threads : {2, 3}) {
        const auto omp = run<OpenMP, SGD, SmallCnn>(data, sgd(), 20, threads, 20);
        INFO("threads " << threads);
        CHECK(testing::max_relative_difference(omp.params, serial.params) <= tolerance);
    }
}

TEST_CASE("Local (per-worker) batch norm is not equivalent, which is why sync is the default",
          "[policy][openmp][cnn]") {
    using LocalCnn =
        Sequential<Input<1, 8, 8>, Conv2D<4, 3, 1, 1>, LocalBatchNorm, ReLU, MaxPool2D<2>, Flatten, Dense<5>>;
    const Dataset data = make_images(90, 1, 8, 8, 5, 31);
    const auto serial = run<Serial, SGD, LocalCnn>(data, sgd(), 20, 1, 10);
    const auto omp = run<OpenMP, SGD, LocalCnn>(data, sgd(), 20, 2, 10);
    CHECK(testing::max_relative_difference(omp.params, serial.params) > tolerance);
}

TEMPLATE_TEST_CASE(
    "Parameter blocks start on cache lines, and the padding stays zero and out of the checksum",
    "[policy][layout]", SGD, Adam) {
    using Model = SmallMlp; // blocks of 40, 153 and 208 floats: 8 and 7 floats of padding
    STATIC_REQUIRE(Model::param_count > Model::learnable_param_count);
    const Dataset data = make_blobs(64, 12, 4, 5);
    TrainerOptions o;
    o.batch = 16;
    o.seed = 9;
    o.threads = 2;
    o.log = false;
    Trainer<Model, SoftmaxCrossEntropy, TestType, OpenMP> trainer(make_opt<TestType>(), o);
    testing::train_steps(trainer, data, 6);
    const auto p = trainer.parameters();
    REQUIRE(p.size() == Model::param_count);
    // Weight decay, momentum and Adam's moments act on the padding too, and must leave it zero.
    std::vector<bool> in_block(p.size(), false);
    Model::for_each_param_block([&](std::size_t first, std::size_t count) {
        CHECK(reinterpret_cast<std::uintptr_t>(p.data() + first) % 64 == 0);
        std::fill_n(in_block.begin() + static_cast<std::ptrdiff_t>(first), count, true);
    });
    std::size_t padding = 0;
    for (std::size_t k = 0; k < p.size(); ++k)
        if (!in_block[k]) {
            ++padding;
            CHECK(p[k] == 0.0f);
        }
    CHECK(padding == Model::param_count - Model::learnable_param_count);
    // The checksum is FNV-1a over the blocks' bytes alone: a value written into the padding
    // leaves it unchanged, one changed parameter does not.
    const std::uint64_t before = trainer.checksum();
    std::size_t gap = 0;
    while (in_block[gap]) ++gap;
    trainer.parameters()[gap] = 1.0f;
    CHECK(trainer.checksum() == before);
    trainer.parameters()[gap] = 0.0f;
    trainer.parameters()[0] += 1.0f;
    CHECK(trainer.checksum() != before);
}

namespace {
TrainerOptions quiet_options(std::size_t batch) {
    TrainerOptions o;
    o.batch = batch;
    o.seed = 3;
    o.log = false;
    return o;
}

/// A file a trainer logs into (options()) and the test then reads (text()).
class CapturedLog {
public:
    CapturedLog() : file_(std::tmpfile()) { REQUIRE(file_ != nullptr); }
    ~CapturedLog() { std::fclose(file_); }
    CapturedLog(const CapturedLog&) = delete;
    CapturedLog& operator=(const CapturedLog&) = delete;
    /// quiet_options(batch), but logging into this file.
    TrainerOptions options(std::size_t batch) const {
        TrainerOptions o = quiet_options(batch);
        o.log = true;
        o.progress = false;
        o.out = file_;
        return o;
    }
    std::string text() const {
        std::rewind(file_);
        std::string t;
        for (int c; (c = std::fgetc(file_)) != EOF;) t.push_back(static_cast<char>(c));
        return t;
    }

private:
    std::FILE* file_;
};
} // namespace

TEST_CASE("A diverging run stops with NumericalError, whatever the learning rate", "[policy][diverge]") {
    // With ReLU and max pooling a diverged value can vanish before the loss (ReLU used to turn NaN
    // into 0): the run then "finished" with NaN parameters. Every rate here diverges; each must stop.
    const Dataset images = make_images(64, 2, 8, 8, 5, 7);
    const Dataset blobs = make_blobs(64, 12, 4, 7);
    for (const float lr : {1e8f, 1e15f, 1e20f, 1e25f, 1e30f}) {
        INFO("lr " << lr);
        Trainer<ConvMlp, SoftmaxCrossEntropy, SGD, Serial> cnn(SGD({.lr = lr, .momentum = 0.9f}),
                                                               quiet_options(16));
        CHECK_THROWS_AS(cnn.fit(images, nullptr, 3), NumericalError);
        Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> mlp(SGD({.lr = lr, .momentum = 0.9f}),
                                                                quiet_options(16));
        CHECK_THROWS_AS(mlp.fit(blobs, nullptr, 3), NumericalError);
    }
}

TEST_CASE("Parameters that are not finite are never saved", "[policy][checkpoint]") {
    const std::filesystem::path file =
        std::filesystem::temp_directory_path() /
        ("pardl_nonfinite_" + std::to_string(std::random_device{}()) + ".ckpt");
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> trainer(sgd(), quiet_options(16));
    trainer.save(file);
    const auto before = std::filesystem::file_size(file);
    const std::uint64_t saved = trainer.checksum();
    for (const float bad :
         {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
        const float kept = trainer.parameters()[5];
        trainer.parameters()[5] = bad;
        CHECK_THROWS_WITH(trainer.save(file),
                          Catch::Contains("parameter 5 of") && Catch::Contains("not written"));
        trainer.parameters()[5] = kept;
    }
    // The file is the first save's: loading it gives those parameters back.
    CHECK(std::filesystem::file_size(file) == before);
    trainer.parameters()[0] += 1.0f;
    trainer.load(file);
    CHECK(trainer.checksum() == saved);
    std::filesystem::remove(file);
}

TEST_CASE("An optimizer state that is not finite stops training and is never saved", "[policy][checkpoint]") {
    // Adam's second moments can overflow to infinity while the parameters stay finite (each step
    // then divides by infinity and the parameter freezes): a run like that has diverged too.
    const std::filesystem::path file =
        std::filesystem::temp_directory_path() /
        ("pardl_nonfinite_state_" + std::to_string(std::random_device{}()) + ".ckpt");
    const Dataset blobs = make_blobs(64, 12, 4, 3);
    Trainer<SmallMlp, SoftmaxCrossEntropy, Adam, Serial> trainer(adam(), quiet_options(16));
    trainer.fit(blobs, nullptr, 1);
    trainer.optimizer().state_buffers()[1][7] = std::numeric_limits<float>::infinity();
    CHECK_THROWS_WITH(trainer.save(file), Catch::Contains("optimizer state value 7 of") &&
                                              Catch::Contains("is inf") && Catch::Contains("not written"));
    CHECK(!std::filesystem::exists(file));
    CHECK_THROWS_WITH(trainer.fit(blobs, nullptr, 1),
                      Catch::Contains("optimizer state value 7 of") && Catch::Contains("after epoch 2"));
}

TEST_CASE("A checkpoint holding a value that is not finite was altered, and is refused so",
          "[policy][checkpoint]") {
    // save refuses such values, so a file with one was edited (its checksum fixed up) or forged:
    // a CheckpointError that says so, not a "diverged" error at the first epoch's end.
    const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                       ("pardl_altered_" + std::to_string(std::random_device{}()) + ".ckpt");
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> trainer(sgd(), quiet_options(16));
    std::vector<float> params(trainer.parameters().begin(), trainer.parameters().end());
    params[3] = std::numeric_limits<float>::quiet_NaN();
    save_checkpoint(file, SmallMlp::signature(), params, {});
    const std::uint64_t mine = trainer.checksum();
    CHECK_THROWS_WITH(trainer.load(file),
                      Catch::Contains("holds a value that is not finite (parameter 3 of") &&
                          Catch::Contains("the file was written otherwise or altered"));
    CHECK(trainer.checksum() == mine);
    std::filesystem::remove(file);
}

TEST_CASE("A test loss that is not finite stops fit with NumericalError", "[policy]") {
    // Finite parameters with a negative running variance (batch norm's statistics, as a hand-edited
    // checkpoint could hold them) predict NaN on the test set, where training, which normalizes
    // by the batch's own statistics, goes on finite.
    const Dataset data = make_images(32, 1, 8, 8, 5, 3);
    Trainer<SmallCnn, SoftmaxCrossEntropy, SGD, Serial> trainer(sgd(), quiet_options(16));
    CHECK_NOTHROW(trainer.fit(data, &data, 1));
    std::fill(trainer.state().begin(), trainer.state().end(), -1e6f); // stays negative over an epoch
    CHECK_THROWS_WITH(
        trainer.fit(data, &data, 1),
        Catch::Contains("the test loss is NaN after epoch 2: the model makes no finite prediction"));
}

TEST_CASE("A checkpoint that fails to load leaves the parameters as they were", "[policy][checkpoint]") {
    const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                       ("pardl_badload_" + std::to_string(std::random_device{}()) + ".ckpt");
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> saved(sgd(), quiet_options(16));
    saved.parameters()[0] = 42.0f; // differs from the trainer below, which is seeded alike
    saved.save(file);
    const auto size = std::filesystem::file_size(file);
    const auto corrupt = [&](auto&& edit) {
        std::vector<char> bytes(size);
        std::ifstream(file, std::ios::binary).read(bytes.data(), static_cast<std::streamsize>(size));
        edit(bytes);
        std::ofstream(file, std::ios::binary | std::ios::trunc)
            .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    };
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> trainer(sgd(), quiet_options(16));
    const std::uint64_t mine = trainer.checksum();
    REQUIRE(mine != saved.checksum());
    SECTION("a flipped bit in the last parameter: the checksum fails after every value was read") {
        corrupt([](std::vector<char>& b) { b.back() = static_cast<char>(b.back() ^ 0x10); });
    }
    SECTION("trailing bytes") {
        corrupt([](std::vector<char>& b) { b.push_back(0); });
    }
    SECTION("truncated in the parameters") {
        corrupt([](std::vector<char>& b) { b.resize(b.size() - 8); });
    }
    CHECK_THROWS_AS(trainer.load(file), CheckpointError);
    CHECK(trainer.checksum() == mine);
    std::filesystem::remove(file);
}

TEST_CASE("Datasets that do not fit the model or the loss are refused before any step", "[policy][data]") {
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> trainer(sgd(), quiet_options(16));
    const std::uint64_t untouched = trainer.checksum();
    SECTION("more classes than the model has outputs") {
        const Dataset five = make_blobs(40, 12, 5, 1); // SmallMlp ends in Dense<4>
        CHECK_THROWS_WITH(trainer.fit(five, nullptr, 1),
                          Catch::Contains("5 classes but the model has 4 outputs"));
        CHECK_THROWS_AS(trainer.evaluate(five), DataError);
    }
    SECTION("a label outside [0, classes)") {
        Dataset bad = make_blobs(40, 12, 4, 1);
        bad.labels[3] = 7;
        CHECK_THROWS_WITH(trainer.fit(bad, nullptr, 1), Catch::Contains("row 3 has label 7, outside [0, 4)"));
        bad.labels[3] = -1;
        CHECK_THROWS_WITH(trainer.evaluate(bad), Catch::Contains("row 3 has label -1"));
        // step checks its own rows, whose labels the loss would read out of bounds.
        CHECK_THROWS_WITH(trainer.step(bad, std::vector<std::size_t>{0, 3, 5}),
                          Catch::Contains("step: dataset row 3 has label -1, outside [0, 4)"));
        bad.labels[3] = 99;
        CHECK_THROWS_WITH(trainer.step(bad, std::vector<std::size_t>{3}), Catch::Contains("has label 99"));
        CHECK_THROWS_WITH(trainer.step(bad, std::vector<std::size_t>{0, 40}),
                          Catch::Contains("step: sample index 40 out of range (40 rows)"));
        CHECK(trainer.steps_done() == 0);
    }
    SECTION("an empty batch, or an empty training set") {
        const Dataset data = make_blobs(40, 12, 4, 1);
        CHECK_THROWS_WITH(trainer.step(data, std::vector<std::size_t>{}),
                          Catch::Contains("step: the batch is empty"));
        CHECK_THROWS_WITH(trainer.fit(data.head(0), nullptr, 1),
                          Catch::Contains("fit: the training dataset is empty"));
        CHECK(trainer.steps_done() == 0);
        CHECK(trainer.epochs_trained() == 0);
    }
    SECTION("buffers that do not hold rows x cols") {
        Dataset bad = make_blobs(40, 12, 4, 1);
        bad.rows = 100;
        CHECK_THROWS_WITH(trainer.fit(bad, nullptr, 1), Catch::Contains("features hold 480 values"));
        BatchLoader loader(bad, 16, 1, false, false);
        loader.start_epoch(1);
        CHECK_THROWS_AS(trainer.step(bad, loader.batch_indices(0)), DataError);
    }
    SECTION("a test set that does not fit fails before training, not after an epoch") {
        const Dataset train = make_blobs(40, 12, 4, 1), test = make_blobs(40, 11, 4, 1);
        CHECK_THROWS_WITH(trainer.fit(train, &test, 1), Catch::Contains("test dataset rows have 11 values"));
    }
    SECTION("a classification loss on a regression set") {
        CHECK_THROWS_WITH(trainer.fit(make_regression(40, 12, 4, 1), nullptr, 1),
                          Catch::Contains("not a classification set"));
    }
    SECTION("a regression loss on a dataset without targets") {
        Trainer<SmallMlp, MSE, SGD, Serial> mse(sgd(), quiet_options(16));
        CHECK_THROWS_WITH(mse.fit(make_blobs(40, 12, 4, 1), nullptr, 1), Catch::Contains("needs one target"));
    }
    CHECK(trainer.checksum() == untouched);
}

TEST_CASE("A batch whose buffers could not be sized is refused, not wrapped around", "[policy]") {
    for (const std::size_t batch : {std::size_t{1} << 62, std::numeric_limits<std::size_t>::max()}) {
        INFO(batch);
        CHECK_THROWS_WITH((Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial>(sgd(), quiet_options(batch))),
                          Catch::Contains("is too large"));
    }
}

TEST_CASE("fit numbers its epochs on: one epoch at a time is the same run as all at once", "[policy]") {
    const Dataset data = make_blobs(203, 12, 4, 99);
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> once(sgd(), quiet_options(16)),
        looped(sgd(), quiet_options(16));
    once.fit(data, nullptr, 3);
    std::vector<std::size_t> numbers;
    for (int e = 0; e < 3; ++e)
        for (const EpochRecord& r : looped.fit(data, nullptr, 1)) numbers.push_back(r.epoch);
    CHECK(numbers == std::vector<std::size_t>{1, 2, 3});
    CHECK(looped.epochs_trained() == 3);
    CHECK(looped.checksum() == once.checksum());
}

TEST_CASE("predict gives the model's outputs in inference mode and leaves batch norm's statistics",
          "[policy]") {
    const Dataset data = make_images(70, 1, 8, 8, 5, 3);
    const auto check = [&](auto& trainer) {
        trainer.fit(data, nullptr, 1);
        const std::vector<float> state_before(trainer.state().begin(), trainer.state().end());
        std::vector<float> out(data.rows * 5, -1.0f);
        trainer.predict(data.x(), Matrix{out.data(), data.rows, 5});
        CHECK(std::vector<float>(trainer.state().begin(), trainer.state().end()) == state_before);
        // The same as the model's own inference forward, row for row, and as evaluate's accuracy.
        typename SmallCnn::Workspace ws(data.rows);
        StepContext ctx;
        ctx.training = false;
        const ConstMatrix ref = SmallCnn::forward(trainer.parameters(), trainer.state(), data.x(), ws, ctx);
        std::size_t correct = 0;
        for (std::size_t r = 0; r < data.rows; ++r) {
            for (std::size_t j = 0; j < 5; ++j) CHECK(out[r * 5 + j] == Approx(ref.row(r)[j]).epsilon(1e-5));
            const auto best =
                std::max_element(out.begin() + r * 5, out.begin() + r * 5 + 5) - (out.begin() + r * 5);
            correct += best == data.labels[r];
        }
        CHECK(static_cast<double>(correct) / static_cast<double>(data.rows) ==
              Approx(trainer.evaluate(data).accuracy));
        std::vector<float> wrong(3);
        CHECK_THROWS_AS(trainer.predict(data.x(), Matrix{wrong.data(), 1, 3}), ConfigError);
        // Rows closer than their width would overwrite each other's outputs.
        CHECK_THROWS_WITH(trainer.predict(data.x().row_block(0, 2), Matrix{out.data(), 2, 5, 3}),
                          Catch::Contains("would overlap"));
    };
    TrainerOptions o = quiet_options(16);
    Trainer<SmallCnn, SoftmaxCrossEntropy, SGD, Serial> serial(sgd(), o);
    check(serial);
    o.threads = 2;
    Trainer<SmallCnn, SoftmaxCrossEntropy, SGD, OpenMP> omp(sgd(), o);
    check(omp);
}

TEST_CASE("Images of the input's size but another shape are refused", "[policy][data]") {
    // 14 x 56 images have the 784 values of 28 x 28 ones but not their rows; flat rows fit either.
    using Cnn = Sequential<Input<1, 8, 8>, Conv2D<2, 3>, Flatten, Dense<3>>;
    Trainer<Cnn, SoftmaxCrossEntropy, SGD, Serial> trainer(sgd(), quiet_options(8));
    CHECK_THROWS_WITH(trainer.fit(make_images(16, 1, 4, 16, 3, 1), nullptr, 1),
                      Catch::Contains("holds 1x4x16 samples but the model input is 1x8x8"));
    CHECK_NOTHROW(trainer.fit(make_images(16, 1, 8, 8, 3, 1), nullptr, 1));
    Trainer<Sequential<Input<64>, Dense<3>>, SoftmaxCrossEntropy, SGD, Serial> flat(sgd(), quiet_options(8));
    CHECK_NOTHROW(flat.fit(make_images(16, 1, 8, 8, 3, 1), nullptr, 1));
}

namespace {
/// Trains `epochs_before` epochs, saves, and resumes in a new trainer (the same options, as a
/// resumed run needs, but a fresh optimizer with another learning rate, which the checkpoint's
/// must replace) for `epochs_after` more: returns the whole run's and the resumed run's
/// checksums, and the resumed trainer's counters.
struct Resumed {
    std::uint64_t whole = 0, resumed = 0, model_only = 0;
    std::uint64_t whole_steps = 0, resumed_steps = 0;
    std::size_t resumed_epochs = 0;
};
template <class Model, class Policy, class Opt>
Resumed resume_run(const Dataset& data, std::size_t threads, std::size_t epochs_before,
                   std::size_t epochs_after, Schedule schedule = {}, float clip_grad_norm = 0) {
    const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                       ("pardl_resume_" + std::to_string(std::random_device{}()) + ".ckpt");
    TrainerOptions o = quiet_options(16);
    o.threads = threads;
    o.schedule = std::move(schedule);
    o.clip_grad_norm = clip_grad_norm;
    Resumed r;
    Trainer<Model, SoftmaxCrossEntropy, Opt, Policy> whole(make_opt<Opt>(), o);
    whole.fit(data, nullptr, epochs_before + epochs_after);
    r.whole = whole.checksum();
    r.whole_steps = whole.steps_done();
    Trainer<Model, SoftmaxCrossEntropy, Opt, Policy> first(make_opt<Opt>(), o);
    first.fit(data, nullptr, epochs_before);
    first.save(file);
    // A fresh optimizer with another learning rate: the checkpoint's must win.
    Opt other = make_opt<Opt>();
    other.set_learning_rate(other.learning_rate() * 3.0f);
    Trainer<Model, SoftmaxCrossEntropy, Opt, Policy> resumed(std::move(other), o);
    CHECK(resumed.load(file).empty()); // the same settings (the rate is progress, not a setting)
    resumed.fit(data, nullptr, epochs_after);
    r.resumed = resumed.checksum();
    r.resumed_steps = resumed.steps_done();
    r.resumed_epochs = resumed.epochs_trained();
    // The same with the model alone: the optimizer restarts, so the run differs.
    Trainer<Model, SoftmaxCrossEntropy, Opt, Policy> model_only(make_opt<Opt>(), o);
    model_only.load_model(file);
    model_only.fit(data, nullptr, epochs_after);
    r.model_only = model_only.checksum();
    std::filesystem::remove(file);
    return r;
}
} // namespace

namespace {
/// What a resumed run must show: the whole run's parameters and counters, and (load_model's
/// run) that without the optimizer's state the run is another.
void check_exact(const Resumed& r) {
    CHECK(r.resumed == r.whole);
    CHECK(r.resumed_steps == r.whole_steps);
    CHECK(r.resumed_epochs == 3);
    CHECK(r.model_only != r.whole);
}
} // namespace

TEMPLATE_TEST_CASE("A run resumed from a checkpoint continues bit for bit", "[policy][checkpoint]", SGD,
                   Adam) {
    const Dataset data = make_blobs(100, 12, 4, 9); // batches of 16: the last epoch's last is 4 rows
    const Dataset wide = make_blobs(100, 40, 5, 9);
    SECTION("Serial") {
        check_exact(resume_run<SmallMlp, Serial, TestType>(data, 1, 2, 1));
    }
    SECTION("Serial, a model with batch norm (its statistics) and dropout (masks keyed by the step)") {
        using NormDropMlp = Sequential<Input<12>, Dense<16>, SyncBatchNorm, ReLU, Dropout<200>, Dense<4>>;
        check_exact(resume_run<NormDropMlp, Serial, TestType>(data, 1, 2, 1));
    }
    SECTION("OpenMP, 3 threads") {
        check_exact(resume_run<WideMlp, OpenMP, TestType>(wide, 3, 1, 2));
    }
    SECTION("TensorParallel, 2 threads") {
        check_exact(resume_run<WideMlp, TensorParallel, TestType>(wide, 2, 2, 1));
    }
    SECTION("Serial and OpenMP with a learning-rate schedule: the resumed run stays on its curve") {
        // 7 steps an epoch: the warm-up ends and the decay steps inside the epochs.
        const Schedule curve = schedule::warmup(3, schedule::step_decay(0.02f, 5, 0.5f));
        check_exact(resume_run<SmallMlp, Serial, TestType>(data, 1, 2, 1, curve));
        check_exact(resume_run<WideMlp, OpenMP, TestType>(wide, 2, 2, 1, curve));
    }
    SECTION("Serial, OpenMP and TensorParallel with gradient clipping (a bound every step exceeds)") {
        check_exact(resume_run<SmallMlp, Serial, TestType>(data, 1, 2, 1, {}, 1e-3f));
        check_exact(resume_run<WideMlp, OpenMP, TestType>(wide, 2, 2, 1, {}, 1e-3f));
        check_exact(resume_run<WideMlp, TensorParallel, TestType>(wide, 2, 1, 2, {}, 1e-3f));
    }
}

TEST_CASE("A learning-rate schedule sets every step's rate, alike under every policy", "[policy][schedule]") {
    const Dataset data = make_blobs(64, 40, 5, 4); // batches of 16: 4 steps an epoch
    TrainerOptions o = quiet_options(16);
    o.schedule = schedule::step_decay(0.05f, 4, 0.5f);
    Trainer<WideMlp, SoftmaxCrossEntropy, SGD, Serial> serial(sgd(), o);
    const std::vector<EpochRecord> history = serial.fit(data, nullptr, 3);
    CHECK(history[0].learning_rate == 0.05f); // steps 0-3
    CHECK(history[1].learning_rate == 0.025f);
    CHECK(history[2].learning_rate == 0.0125f);
    CHECK(serial.optimizer().learning_rate() == 0.0125f);
    // The schedule, not the optimizer's own rate, decides: the same run without it differs.
    Trainer<WideMlp, SoftmaxCrossEntropy, SGD, Serial> constant(sgd(), quiet_options(16));
    constant.fit(data, nullptr, 3);
    CHECK(constant.checksum() != serial.checksum());
    for (std::size_t threads : {2, 3}) {
        o.threads = threads;
        Trainer<WideMlp, SoftmaxCrossEntropy, SGD, OpenMP> omp(sgd(), o);
        omp.fit(data, nullptr, 3);
        INFO("OpenMP, " << threads << " threads");
        CHECK(testing::max_relative_difference(omp.parameters(), serial.parameters()) <= 1e-5);
    }
    o.threads = 2;
    Trainer<WideMlp, SoftmaxCrossEntropy, SGD, TensorParallel> tensor(sgd(), o);
    tensor.fit(data, nullptr, 3);
    CHECK(testing::max_relative_difference(tensor.parameters(), serial.parameters()) <= 1e-5);
}

TEST_CASE("A schedule that gives no usable rate stops the run by name, and the log shows the rate",
          "[policy][schedule]") {
    const Dataset data = make_blobs(64, 12, 4, 4);
    const CapturedLog log;
    TrainerOptions o = log.options(16);
    using T = Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial>;
    const T* watched = nullptr;
    std::uint64_t before_step_6 = 0;
    o.schedule = [&](std::uint64_t step) {
        if (step == 6 && watched != nullptr) before_step_6 = watched->checksum();
        return step < 6 ? 0.01f : std::numeric_limits<float>::quiet_NaN();
    };
    T trainer(sgd(), o);
    watched = &trainer;
    trainer.fit(data, nullptr, 1);
    const std::uint64_t after_epoch_1 = trainer.checksum();
    CHECK_THROWS_WITH(trainer.fit(data, nullptr, 1),
                      Catch::Contains("schedule gave nan for step 6") && Catch::Contains(">= 0"));
    CHECK(trainer.steps_done() == 6);           // steps 4 and 5 ran
    CHECK(trainer.optimizer().steps() == 6);    // step 6 never began
    CHECK(trainer.checksum() == before_step_6); // and changed nothing
    CHECK(trainer.checksum() != after_epoch_1);
    o.schedule = [](std::uint64_t) { return -0.1f; };
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> negative(sgd(), o);
    CHECK_THROWS_WITH(negative.fit(data, nullptr, 1), Catch::Contains("-0.1 for step 0"));
    CHECK_THAT(log.text(), Catch::Contains("epoch   1  loss") && Catch::Contains("lr 0.01"));
}

/// A clipping bound (o.*bound) that is not a number >= 0 stops trainer T's construction, by name.
template <class T>
void check_bad_bounds_refused(TrainerOptions o, float TrainerOptions::*bound, const std::string& name) {
    for (float bad :
         {-1.0f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        o.*bound = bad;
        INFO(name << " " << bad);
        CHECK_THROWS_AS(T(SGD{}, o), ConfigError);
    }
    o.*bound = -1.0f;
    CHECK_THROWS_WITH(T(SGD{}, o), Catch::Contains(name + " is -1"));
}

/// One step of Serial SmallMlp with plain SGD on a fixed batch of 16 rows, and how far it moved
/// each parameter: -lr times the (clipped) mean gradient, what the clipping rules are checked on.
struct OneSgdStep {
    using T = Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial>;
    static constexpr float lr = 0.1f;
    Dataset data = make_blobs(64, 12, 4, 4);
    BatchLoader loader{data, 16, 3, /*shuffle=*/true, /*drop_last=*/false};
    OneSgdStep() { loader.start_epoch(1); }
    std::vector<float> moved(T& trainer, StepResult* result = nullptr) {
        const std::vector<float> before(trainer.parameters().begin(), trainer.parameters().end());
        const StepResult r = trainer.step(data, loader.batch_indices(0));
        if (result != nullptr) *result = r;
        std::vector<float> delta(before.size());
        for (std::size_t i = 0; i < before.size(); ++i) delta[i] = trainer.parameters()[i] - before[i];
        return delta;
    }
};

TEST_CASE("Gradient clipping scales the mean gradient to the bound, and only where its norm exceeds it",
          "[policy][clip]") {
    OneSgdStep one;
    using T = OneSgdStep::T;
    const float lr = OneSgdStep::lr;
    auto moved = [&](T& trainer, StepResult& result) { return one.moved(trainer, &result); };
    auto norm = [](const std::vector<float>& v) {
        double s = 0;
        for (float x : v) s += static_cast<double>(x) * x;
        return std::sqrt(s);
    };
    TrainerOptions o = quiet_options(16);
    T plain(SGD({.lr = lr}), o);
    StepResult plain_result;
    const std::vector<float> full = moved(plain, plain_result);
    CHECK(std::isnan(plain_result.grad_norm)); // not computed without clipping
    CHECK_FALSE(plain_result.clipped);
    const double gradient_norm = norm(full) / lr;
    REQUIRE(gradient_norm > 0.01);

    SECTION("a bound above the norm: the unclipped step's bits, and the norm reported") {
        o.clip_grad_norm = static_cast<float>(2 * gradient_norm);
        T loose(SGD({.lr = lr}), o);
        StepResult r;
        CHECK(moved(loose, r) == full);
        CHECK_FALSE(r.clipped);
        CHECK(r.grad_norm == Approx(gradient_norm).epsilon(1e-4));
        CHECK(loose.checksum() == plain.checksum());
    }
    SECTION("a bound below it: the same direction, the bound's length") {
        const double bound = 0.25 * gradient_norm;
        o.clip_grad_norm = static_cast<float>(bound);
        T tight(SGD({.lr = lr}), o);
        StepResult r;
        const std::vector<float> clipped = moved(tight, r);
        CHECK(r.clipped);
        CHECK(r.grad_norm == Approx(gradient_norm).epsilon(1e-4));
        CHECK(norm(clipped) / lr == Approx(static_cast<double>(o.clip_grad_norm)).epsilon(1e-4));
        std::vector<float> scaled(full.size());
        const double factor = static_cast<double>(o.clip_grad_norm) / r.grad_norm;
        for (std::size_t i = 0; i < full.size(); ++i) scaled[i] = static_cast<float>(full[i] * factor);
        CHECK(testing::max_relative_difference(clipped, scaled) <= 1e-5);
    }
    SECTION("a bound that is not a number > 0 is refused") {
        check_bad_bounds_refused<T>(o, &TrainerOptions::clip_grad_norm, "clip_grad_norm");
    }
}

TEST_CASE("Clipped training is alike under every in-process policy, and a loose bound changes nothing",
          "[policy][clip]") {
    const Dataset data = make_blobs(203, 40, 5, 99); // batch 50: each epoch ends with 3 rows
    // The first step's gradient norm, reported by a bound no gradient reaches.
    TrainerOptions o = quiet_options(50);
    o.clip_grad_norm = 1e30f;
    Trainer<WideMlp, SoftmaxCrossEntropy, SGD, Serial> probe(sgd(), o);
    BatchLoader loader(data, 50, o.seed, true, false);
    loader.start_epoch(1);
    const double first_norm = probe.step(data, loader.batch_indices(0)).grad_norm;
    REQUIRE(std::isfinite(first_norm));
    const auto bound = static_cast<float>(0.5 * first_norm);
    const auto serial = run<Serial, SGD, WideMlp>(data, sgd(), 50, 1, 25, 0, {}, bound);
    const auto unclipped = run<Serial, SGD, WideMlp>(data, sgd(), 50, 1, 25);
    // The bound mattered: far more than rounding apart.
    CHECK(testing::max_relative_difference(serial.params, unclipped.params) > 100 * tolerance);
    // A team of one takes the several-process path (the whole sum, its norm, then the update),
    // Serial the one-process path (the norm's partial sums kept in the worker sum, the update in
    // a second pass): from the same sums, the same norm and the same bits.
    CHECK(run<TensorParallel, SGD, WideMlp>(data, sgd(), 50, 1, 25, 0, {}, bound).params == serial.params);
    for (std::size_t threads : {2, 3, 5}) { // 5: more threads than WideMlp's 3 blocks of the sum
        INFO("threads " << threads);
        const auto omp = run<OpenMP, SGD, WideMlp>(data, sgd(), 50, threads, 25, 0, {}, bound);
        CHECK(testing::max_relative_difference(omp.params, serial.params) <= tolerance);
        // W workers taken in turn sum as W threads do: the same norm, the same bits.
        CHECK(omp.params == run<Serial, SGD, WideMlp>(data, sgd(), 50, threads, 25, 0, {}, bound).params);
        // A bound no gradient reaches is the unclipped run, bit for bit (its own update path).
        CHECK(run<OpenMP, SGD, WideMlp>(data, sgd(), 50, threads, 25, 0, {}, 1e30f).params ==
              run<OpenMP, SGD, WideMlp>(data, sgd(), 50, threads, 25).params);
    }
    const auto tensor = run<TensorParallel, SGD, WideMlp>(data, sgd(), 50, 2, 25, 0, {}, bound);
    CHECK(testing::max_relative_difference(tensor.params, serial.params) <= tolerance);
    const auto adam_serial = run<Serial, Adam, WideMlp>(data, adam(), 50, 1, 25, 0, {}, bound);
    const auto adam_omp = run<OpenMP, Adam, WideMlp>(data, adam(), 50, 2, 25, 0, {}, bound);
    CHECK(testing::max_relative_difference(adam_omp.params, adam_serial.params) <= tolerance);
    // Adam divides by the gradient's running magnitude, which undoes a constant factor, but not
    // factors that change from step to step: clipping still changes the run.
    const auto adam_unclipped = run<Serial, Adam, WideMlp>(data, adam(), 50, 1, 25);
    CHECK(testing::max_relative_difference(adam_serial.params, adam_unclipped.params) > 100 * tolerance);
    // AdamW: the weight decay acts on the parameters, past the clipped gradient.
    const AdamW::Options adamw{.lr = 3e-3f, .weight_decay = 0.05f};
    const auto adamw_serial = run<Serial, AdamW, WideMlp>(data, AdamW(adamw), 50, 1, 25, 0, {}, bound);
    const auto adamw_omp = run<OpenMP, AdamW, WideMlp>(data, AdamW(adamw), 50, 3, 25, 0, {}, bound);
    CHECK(testing::max_relative_difference(adamw_omp.params, adamw_serial.params) <= tolerance);
}

TEST_CASE("Clipping by value clamps each element of the mean gradient, and only those beyond the bound",
          "[policy][clip]") {
    OneSgdStep one;
    using T = OneSgdStep::T;
    const float lr = OneSgdStep::lr;
    auto moved = [&](T& trainer) { return one.moved(trainer); };
    TrainerOptions o = quiet_options(16);
    T plain(SGD({.lr = lr}), o);
    const std::vector<float> full = moved(plain);
    float largest = 0; // the largest step of one parameter, lr times the largest gradient element
    for (float d : full) largest = std::max(largest, std::abs(d));
    // Steps far above the parameters' rounding (about 3e-8 here), for the 1e-5 comparisons below.
    REQUIRE(largest > 1e-2f);

    SECTION("a bound above every element: the unclipped step's bits") {
        o.clip_grad_value = 2 * largest / lr;
        T loose(SGD({.lr = lr}), o);
        CHECK(moved(loose) == full);
        CHECK(loose.checksum() == plain.checksum());
    }
    SECTION("a bound below some: those elements at the bound, the others as they were") {
        o.clip_grad_value = 0.25f * largest / lr;
        T tight(SGD({.lr = lr}), o);
        const std::vector<float> clamped = moved(tight);
        const float step_bound = lr * o.clip_grad_value;
        std::vector<float> expected(full.size());
        std::size_t at_upper = 0, at_lower = 0, untouched = 0;
        for (std::size_t i = 0; i < full.size(); ++i) {
            expected[i] = std::clamp(full[i], -step_bound, step_bound);
            (expected[i] == full[i] ? untouched : full[i] > 0 ? at_upper : at_lower) += 1;
        }
        CHECK(at_upper > 0); // parameters that moved up by the bound: gradients clamped at -bound
        CHECK(at_lower > 0);
        CHECK(untouched > at_upper + at_lower);
        CHECK(testing::max_relative_difference(clamped, expected) <= 1e-5);
    }
    SECTION("weight decay is added after the clamp, as PyTorch's clip_grad_value_ before step()") {
        o.clip_grad_value = 0.25f * largest / lr;
        const float decay = 0.5f; // large, so that the decay term is well above the rounding
        T decayed(SGD({.lr = lr, .weight_decay = decay}), o);
        const std::vector<float> before(decayed.parameters().begin(), decayed.parameters().end());
        const std::vector<float> step = moved(decayed);
        const float step_bound = lr * o.clip_grad_value;
        std::vector<float> expected(full.size());
        for (std::size_t i = 0; i < full.size(); ++i)
            expected[i] = std::clamp(full[i], -step_bound, step_bound) - lr * decay * before[i];
        CHECK(testing::max_relative_difference(step, expected) <= 1e-5);
    }
    SECTION("a bound that is not a number > 0 is refused, and so is clipping by norm as well") {
        check_bad_bounds_refused<T>(o, &TrainerOptions::clip_grad_value, "clip_grad_value");
        o.clip_grad_value = 1.0f;
        o.clip_grad_norm = 1.0f;
        CHECK_THROWS_WITH(T(SGD({.lr = lr}), o), Catch::Contains("are both set"));
    }
}

/// 25 steps of WideMlp under Policy, batch 50, clipping by value at `bound`.
template <class Policy, class Opt>
testing::TrainedRun clamped(const Dataset& data, Opt opt, std::size_t threads, float bound) {
    return testing::train_fresh<WideMlp, Policy>(
        data, std::move(opt), {.batch = 50, .threads = threads, .steps = 25, .clip_grad_value = bound});
}

TEST_CASE(
    "Training clipped by value is alike under every in-process policy, and a loose bound changes nothing",
    "[policy][clip]") {
    const Dataset data = make_blobs(203, 40, 5, 99); // batch 50: each epoch ends with 3 rows
    const float bound = 2e-3f; // below the largest elements of every step's mean gradient
    const auto serial = clamped<Serial>(data, sgd(), 1, bound);
    const auto unclipped = run<Serial, SGD, WideMlp>(data, sgd(), 50, 1, 25);
    // The bound mattered: far more than rounding apart.
    CHECK(testing::max_relative_difference(serial.params, unclipped.params) > 100 * tolerance);
    // The optimizer that clamps its gradient itself, the one that only scales it and the one
    // that is handed it scaled take the same clamped gradient.
    CHECK(clamped<Serial>(data, PlainSgd{sgd()}, 1, bound).params == serial.params);
    CHECK(clamped<Serial>(data, ScalingOnlySgd{{sgd()}}, 1, bound).params == serial.params);
    CHECK(clamped<OpenMP>(data, ScalingOnlySgd{{sgd()}}, 3, bound).params ==
          clamped<OpenMP>(data, sgd(), 3, bound).params);
    for (std::size_t threads : {2, 3, 5}) {
        INFO("threads " << threads);
        const auto omp = clamped<OpenMP>(data, sgd(), threads, bound);
        CHECK(testing::max_relative_difference(omp.params, serial.params) <= tolerance);
        // W workers taken in turn sum as W threads do: the same bits.
        CHECK(omp.params == clamped<Serial>(data, sgd(), threads, bound).params);
        // A bound no element reaches is the unclipped run, bit for bit.
        CHECK(clamped<OpenMP>(data, sgd(), threads, 1e30f).params ==
              run<OpenMP, SGD, WideMlp>(data, sgd(), 50, threads, 25).params);
    }
    const auto tensor = clamped<TensorParallel>(data, sgd(), 2, bound);
    CHECK(testing::max_relative_difference(tensor.params, serial.params) <= tolerance);
    const auto adam_serial = clamped<Serial>(data, adam(), 1, bound);
    CHECK(testing::max_relative_difference(clamped<OpenMP>(data, adam(), 2, bound).params,
                                           adam_serial.params) <= tolerance);
    const auto adam_unclipped = run<Serial, Adam, WideMlp>(data, adam(), 50, 1, 25);
    CHECK(testing::max_relative_difference(adam_serial.params, adam_unclipped.params) > 100 * tolerance);
    // A bound no element reaches keeps every optimizer's bits: each rounds the scaled gradient
    // before it uses it, so the scale applied first and 1 handed over is the same arithmetic.
    CHECK(clamped<OpenMP>(data, adam(), 2, 1e30f).params ==
          run<OpenMP, Adam, WideMlp>(data, adam(), 50, 2, 25).params);
    const AdamW::Options adamw{.lr = 3e-3f, .weight_decay = 0.05f};
    CHECK(clamped<Serial>(data, AdamW(adamw), 1, 1e30f).params ==
          run<Serial, AdamW, WideMlp>(data, AdamW(adamw), 50, 1, 25).params);
    const SGD::Options nesterov{.lr = 0.05f, .momentum = 0.9f, .nesterov = true, .weight_decay = 1e-3f};
    CHECK(clamped<Serial>(data, SGD(nesterov), 1, 1e30f).params ==
          run<Serial, SGD, WideMlp>(data, SGD(nesterov), 50, 1, 25).params);
    CHECK(clamped<TensorParallel>(data, sgd(), 2, 1e30f).params ==
          run<TensorParallel, SGD, WideMlp>(data, sgd(), 50, 2, 25).params);
}

TEST_CASE("A checkpoint whose schedule ended at rate 0, loaded without a schedule, says so",
          "[policy][schedule][checkpoint]") {
    const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                       ("pardl_rate0_" + std::to_string(std::random_device{}()) + ".ckpt");
    const Dataset data = make_blobs(64, 12, 4, 4); // 4 steps an epoch
    TrainerOptions o = quiet_options(16);
    o.schedule = schedule::cosine(0.05f, 4); // 0 from step 4 on
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> ended(sgd(), o);
    ended.fit(data, nullptr, 2);
    CHECK(ended.optimizer().learning_rate() == 0.0f);
    ended.save(file); // a rate of 0 is a rate a run writes
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> plain(sgd(), quiet_options(16));
    const std::vector<std::string> report = plain.load(file);
    REQUIRE(report.size() == 2);
    CHECK_THAT(report[0], Catch::StartsWith("learning rate: 0 in the checkpoint") &&
                              Catch::Contains("would not move the parameters"));
    CHECK_THAT(report[1], Catch::StartsWith("schedule: rates at steps 0, 10, ..., 1e5: 0.05 0 0 0 0 0; every "
                                            "step below 131072: hash ") &&
                              Catch::EndsWith(" in the checkpoint, none here"));
    CHECK(plain.optimizer().learning_rate() == 0.0f);
    // The same schedule: nothing to say, and training on stays at rate 0 as the saving run would.
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> same(sgd(), o);
    CHECK(same.load(file).empty());
    // Schedules that agree at steps 0, 10, 100, ... but not at every step are told apart.
    TrainerOptions saved_options = quiet_options(16), other_options = quiet_options(16);
    saved_options.schedule = schedule::multi_step(0.05f, {20, 30}, 0.5f);
    other_options.schedule = schedule::multi_step(0.05f, {20, 40}, 0.5f);
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> milestones(sgd(), saved_options);
    milestones.save(file);
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> moved(sgd(), other_options);
    const std::vector<std::string> moved_report = moved.load(file);
    REQUIRE(moved_report.size() == 1);
    CHECK_THAT(moved_report[0],
               Catch::StartsWith("schedule: rates at steps 0, 10, ..., 1e5: 0.05 0.05 0.0125 "));
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> kept(sgd(), saved_options);
    CHECK(kept.load(file).empty());
    std::filesystem::remove(file);
}

TEST_CASE("A checkpoint of one optimizer is refused by another, and load_model takes its model",
          "[policy][checkpoint]") {
    const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                       ("pardl_otheropt_" + std::to_string(std::random_device{}()) + ".ckpt");
    const Dataset data = make_blobs(64, 12, 4, 3);
    Trainer<SmallMlp, SoftmaxCrossEntropy, Adam, Serial> with_adam(adam(), quiet_options(16));
    with_adam.fit(data, nullptr, 1);
    with_adam.save(file);
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> with_sgd(sgd(), quiet_options(16));
    const std::uint64_t before = with_sgd.checksum();
    CHECK_THROWS_WITH(with_sgd.load(file), Catch::Contains("optimizer adam") && Catch::Contains("sgd") &&
                                               Catch::Contains("load_model"));
    CHECK(with_sgd.checksum() == before); // refused before anything changed
    CHECK(with_sgd.steps_done() == 0);
    with_sgd.load_model(file);
    CHECK(with_sgd.checksum() == with_adam.checksum());
    CHECK(with_sgd.steps_done() == 0);
    CHECK(with_sgd.epochs_trained() == 0);
    // SGD without momentum keeps no state: a momentum checkpoint does not fit it either.
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> momentum(sgd(), quiet_options(16));
    momentum.fit(data, nullptr, 1);
    momentum.save(file);
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> plain(SGD({.lr = 0.05f}), quiet_options(16));
    CHECK_THROWS_WITH(plain.load(file), Catch::Contains("values") && Catch::Contains("load_model"));
    std::filesystem::remove(file);
}

TEST_CASE("OptimizerChoice trains to the bits of the optimizer it holds, and shares its checkpoints",
          "[policy][optimizers][checkpoint]") {
    using Choice = OptimizerChoice<SGD, Adam>;
    STATIC_REQUIRE(ClampsGradient<Choice>);
    STATIC_REQUIRE(SavesState<Choice>);
    STATIC_REQUIRE(OptimizerSettings<Choice>);
    // With a choice that does not scale or save, the choice does neither: the trainer takes the
    // plain path for every choice alike.
    using WithPlain = OptimizerChoice<SGD, PlainSgd>;
    STATIC_REQUIRE(Optimizer<WithPlain>);
    STATIC_REQUIRE(!ScalesGradient<WithPlain>);
    STATIC_REQUIRE(!SavesState<WithPlain>);
    const Dataset data = make_blobs(203, 12, 4, 99); // batch 50: each epoch ends with 3 rows
    for (std::size_t threads : {1, 2}) {
        INFO("threads " << threads);
        const auto sgd_run = run<OpenMP>(data, sgd(), 50, threads, 25);
        const auto sgd_chosen = run<OpenMP>(data, Choice(sgd()), 50, threads, 25);
        CHECK(sgd_chosen.params == sgd_run.params);
        CHECK(sgd_chosen.losses == sgd_run.losses);
        const auto adam_run = run<OpenMP>(data, adam(), 50, threads, 25, 0, {}, 1e-3f); // clipped by norm
        const auto adam_chosen = run<OpenMP>(data, Choice(adam()), 50, threads, 25, 0, {}, 1e-3f);
        CHECK(adam_chosen.params == adam_run.params);
        CHECK(adam_chosen.losses == adam_run.losses);
        const auto plain_chosen = run<OpenMP>(data, WithPlain(PlainSgd{sgd()}), 50, threads, 25);
        CHECK(plain_chosen.params == sgd_run.params);
        // Clipping by value: the choice's clamping update (ClampsGradient) is the chosen one's.
        const testing::RunSpec clamped{
            .batch = 50, .threads = threads, .steps = 25, .clip_grad_value = 1e-3f};
        const auto sgd_clamped = testing::train_fresh<SmallMlp, OpenMP>(data, sgd(), clamped);
        const auto sgd_clamped_chosen = testing::train_fresh<SmallMlp, OpenMP>(data, Choice(sgd()), clamped);
        CHECK(sgd_clamped_chosen.params == sgd_clamped.params);
        CHECK(testing::max_relative_difference(sgd_clamped.params, sgd_run.params) > 100 * tolerance);
    }
    // A checkpoint written through the choice is the chosen optimizer's, and the other way round.
    const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                       ("pardl_choice_" + std::to_string(std::random_device{}()) + ".ckpt");
    Trainer<SmallMlp, SoftmaxCrossEntropy, Choice, Serial> chosen(Choice(adam()), quiet_options(16));
    CHECK(chosen.optimizer().name() == "adam");
    CHECK(chosen.optimizer().get_if<Adam>() != nullptr);
    CHECK(chosen.optimizer().get_if<SGD>() == nullptr);
    chosen.fit(data, nullptr, 1);
    chosen.save(file);
    Trainer<SmallMlp, SoftmaxCrossEntropy, Adam, Serial> own(adam(), quiet_options(16));
    CHECK(own.load(file).empty());
    CHECK(own.checksum() == chosen.checksum());
    own.fit(data, nullptr, 1);
    chosen.fit(data, nullptr, 1); // both continue alike: the moments and the step count came along
    CHECK(own.checksum() == chosen.checksum());
    own.save(file);
    Trainer<SmallMlp, SoftmaxCrossEntropy, Choice, Serial> back(Choice(adam()), quiet_options(16));
    CHECK(back.load(file).empty());
    CHECK(back.checksum() == own.checksum());
    Trainer<SmallMlp, SoftmaxCrossEntropy, Choice, Serial> other(Choice(sgd()), quiet_options(16));
    CHECK_THROWS_WITH(other.load(file), Catch::Contains("optimizer adam") && Catch::Contains("sgd"));
    std::filesystem::remove(file);
}

TEST_CASE("A resume under other settings names each one that differs, on load and in the log",
          "[policy][checkpoint]") {
    const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                       ("pardl_settings_" + std::to_string(std::random_device{}()) + ".ckpt");
    const Dataset data = make_blobs(64, 12, 4, 3);
    TrainerOptions o = quiet_options(16);
    o.threads = 3;
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, OpenMP> saved(sgd(), o); // momentum 0.9, wd 1e-4
    saved.fit(data, nullptr, 1);
    saved.save(file);
    const auto settings = saved.run_settings();
    using Setting = std::pair<std::string, std::string>;
    REQUIRE(settings.size() == 12);
    CHECK(settings[0] == Setting{"policy", "openmp"});
    CHECK(settings[2] == Setting{"workers per rank", "3"});
    CHECK(settings[5] == Setting{"loss", "softmax-cross-entropy"});
    CHECK(settings[6] == Setting{"flush subnormals", "yes"});
    CHECK(settings[7] == Setting{"schedule", "none"});
    CHECK(settings[8] == Setting{"clip gradient norm", "off"});
    CHECK(settings[9] == Setting{"clip gradient value", "off"});
    CHECK(settings[10] == Setting{"momentum", "0.9"});
    // What a trainer built with `changed` (and the same optimizer) reports as it loads the file.
    const auto report_with = [&](const TrainerOptions& changed) {
        Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, OpenMP> loading(sgd(), changed);
        return loading.load(file);
    };
    TrainerOptions clipping = o; // the saving run's options, but clipping at 0.3
    clipping.clip_grad_norm = 0.3f;
    TrainerOptions clamping = o; // the same, clipping by value at 0.5
    clamping.clip_grad_value = 0.5f;

    SECTION("the same settings: nothing to report, nothing logged") {
        const CapturedLog log;
        TrainerOptions same_options = log.options(16);
        same_options.threads = 3;
        Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, OpenMP> same(sgd(), same_options);
        CHECK(same.load(file).empty());
        CHECK(log.text().empty());
    }
    SECTION("a checkpoint from before the clipping settings existed: not clipping is no difference") {
        // Rewritten without the setting, as a checkpoint written before it existed.
        std::vector<float> params(saved.parameters().begin(), saved.parameters().end());
        std::vector<float> state;
        TrainingProgress progress;
        load_checkpoint(file, SmallMlp::signature(), params, state, &progress);
        std::erase_if(progress.settings,
                      [](const Setting& s) { return s.first.starts_with("clip gradient "); });
        REQUIRE(progress.settings.size() == 10);
        save_checkpoint(file, SmallMlp::signature(), params, state, &progress);
        CHECK(report_with(o).empty());
        CHECK(report_with(clipping) ==
              std::vector<std::string>{"clip gradient norm: not in the checkpoint, 0.3 here"});
        CHECK(report_with(clamping) ==
              std::vector<std::string>{"clip gradient value: not in the checkpoint, 0.5 here"});
    }
    SECTION("the program's own settings: recorded after the others, compared alike, checked") {
        TrainerOptions mine = o;
        mine.settings = {{"training data", "64 images"}};
        Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, OpenMP> with_data(sgd(), mine);
        CHECK(with_data.run_settings().back() == Setting{"training data", "64 images"});
        with_data.save(file);
        mine.settings = {{"training data", "32 images"}};
        CHECK(report_with(mine) ==
              std::vector<std::string>{"training data: 64 images in the checkpoint, 32 images here"});
        mine.settings = {{"batch", "8"}};
        CHECK_THROWS_WITH((Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, OpenMP>(sgd(), mine)),
                          Catch::Contains("two settings share a name (batch)"));
    }
    SECTION("clipping the gradient, where the saving run did not: named") {
        CHECK(report_with(clipping) ==
              std::vector<std::string>{"clip gradient norm: off in the checkpoint, 0.3 here"});
        CHECK(report_with(clamping) ==
              std::vector<std::string>{"clip gradient value: off in the checkpoint, 0.5 here"});
    }
    SECTION("keeping subnormals, where the saving run flushed them: named") {
        TrainerOptions keep = o;
        keep.flush_subnormals = false;
        CHECK(report_with(keep) ==
              std::vector<std::string>{"flush subnormals: yes in the checkpoint, no here"});
    }
    SECTION("another batch, seed, worker count and momentum: each named, the log says so") {
        const CapturedLog log;
        TrainerOptions changed = log.options(32);
        changed.seed = 8;
        changed.threads = 2;
        Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, OpenMP> other(
            SGD({.lr = 0.05f, .momentum = 0.5f, .weight_decay = 1e-4f}), changed);
        const std::vector<std::string> report = other.load(file);
        CHECK(report == std::vector<std::string>{"workers per rank: 3 in the checkpoint, 2 here",
                                                 "batch: 16 in the checkpoint, 32 here",
                                                 "seed: 3 in the checkpoint, 8 here",
                                                 "momentum: 0.9 in the checkpoint, 0.5 here"});
        CHECK(other.steps_done() == saved.steps_done()); // it resumed all the same
        CHECK(other.checksum() == saved.checksum());
        CHECK_THAT(log.text(), Catch::Contains("note: checkpoint") &&
                                   Catch::Contains("batch: 16 in the checkpoint, 32 here; seed") &&
                                   Catch::Contains("not bit for bit"));
    }
    SECTION("another policy") {
        Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> serial(sgd(), quiet_options(16));
        CHECK(serial.load(file) == std::vector<std::string>{"policy: openmp in the checkpoint, serial here",
                                                            "workers per rank: 3 in the checkpoint, 1 here"});
    }
    SECTION("a checkpoint without settings (format version 2): it says none were compared") {
        TrainingProgress progress;
        progress.step = saved.steps_done();
        progress.epochs = 1;
        progress.optimizer = "sgd";
        progress.learning_rate = 0.05f;
        progress.optimizer_steps = saved.steps_done();
        const std::span<float> velocity = saved.optimizer().state_buffers().at(0);
        progress.optimizer_state.assign(velocity.begin(), velocity.end());
        save_checkpoint(file, SmallMlp::signature(), saved.parameters(), {}, &progress);
        std::vector<char> bytes = checkpoint_layout::read_bytes(file);
        checkpoint_layout::make_version_2(bytes, SmallMlp::signature(), checkpoint_layout::settings_size({}));
        checkpoint_layout::write_bytes(file, bytes);
        Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> old(sgd(), quiet_options(64));
        CHECK(old.load(file) == std::vector<std::string>{
                                    "settings: not recorded (checkpoint format version 2), so not compared"});
        CHECK(old.steps_done() == saved.steps_done());
        CHECK(old.checksum() == saved.checksum());
    }
    std::filesystem::remove(file);
}

TEST_CASE("The epoch log shows accuracy only for classification data", "[policy][log]") {
    // Accuracy is argmax against labels: for regression targets it would print a meaningless 0.
    const auto log_of = [](auto&& make_trainer, const Dataset& data) {
        const CapturedLog log;
        auto trainer = make_trainer(log.options(16));
        trainer->fit(data, &data, 1);
        return log.text();
    };
    const std::string regression = log_of(
        [](const TrainerOptions& o) {
            return std::make_unique<Trainer<SmallMlp, MSE, SGD, Serial>>(SGD({.lr = 0.01f}), o);
        },
        make_regression(64, 12, 4, 5));
    CHECK_THAT(regression, Catch::Contains("epoch   1  loss") && Catch::Contains("test loss"));
    CHECK_THAT(regression, !Catch::Contains("acc"));
    const std::string classification = log_of(
        [](const TrainerOptions& o) {
            return std::make_unique<Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial>>(sgd(), o);
        },
        make_blobs(64, 12, 4, 5));
    CHECK_THAT(classification, Catch::Contains("train acc") && Catch::Contains("test acc"));
}

TEST_CASE("A regression set trains with MSE under every in-process policy alike", "[policy][regression]") {
    // make_regression's labels are zeros with classes 0: placeholders that the checks must not
    // read as class indices (they once refused row 0's label 0 as outside [0, 0)).
    const Dataset data = make_regression(100, 12, 4, 3);
    TrainerOptions o = quiet_options(16);
    Trainer<SmallMlp, MSE, SGD, Serial> serial(SGD({.lr = 0.01f}), o);
    const double before = serial.evaluate(data).loss;
    serial.fit(data, &data, 3);
    const double after = serial.evaluate(data).loss;
    CHECK(after < before);
    o.threads = 2;
    Trainer<SmallMlp, MSE, SGD, OpenMP> omp(SGD({.lr = 0.01f}), o);
    omp.fit(data, &data, 3);
    CHECK(testing::max_relative_difference(omp.parameters(), serial.parameters()) <= 1e-5);
}

TEST_CASE("A failed or model-only load leaves the optimizer, its rate and the counters alone",
          "[policy][checkpoint]") {
    const std::filesystem::path dir = std::filesystem::temp_directory_path();
    const std::string tag = std::to_string(std::random_device{}());
    const std::filesystem::path good = dir / ("pardl_keep_" + tag + ".ckpt"),
                                bad = dir / ("pardl_bad_" + tag + ".ckpt");
    const Dataset data = make_blobs(64, 12, 4, 3);
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> other(sgd(), quiet_options(16));
    other.fit(data, nullptr, 1);
    other.save(good);
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> trainer(sgd(), quiet_options(16));
    trainer.fit(data, nullptr, 2);
    trainer.optimizer().set_learning_rate(0.02f);
    const auto velocity = [&] {
        const std::span<float> v = trainer.optimizer().state_buffers().at(0);
        return std::vector<float>(v.begin(), v.end());
    };
    const std::vector<float> before = velocity();
    const std::uint64_t params = trainer.checksum(), steps = trainer.steps_done();
    const auto unchanged = [&](bool same_params) {
        CHECK(velocity() == before);
        CHECK(trainer.optimizer().learning_rate() == 0.02f);
        CHECK(trainer.steps_done() == steps);
        CHECK(trainer.epochs_trained() == 2);
        CHECK((trainer.checksum() == params) == same_params);
    };
    SECTION("a corrupt file: nothing changes") {
        const std::vector<char> bytes = checkpoint_layout::read_bytes(good);
        // A byte of the optimizer state (just before the settings), then one of the settings.
        const std::size_t settings = checkpoint_layout::settings_size(other.run_settings());
        for (const std::size_t at : {bytes.size() - settings - 3, bytes.size() - 3}) {
            std::vector<char> flipped = bytes;
            flipped[at] = static_cast<char>(flipped[at] ^ 0x20);
            checkpoint_layout::write_bytes(bad, flipped);
            INFO("byte " << at << " of " << bytes.size());
            CHECK_THROWS_WITH(
                trainer.load(bad),
                Catch::Contains("is corrupt")); // the checksum, or a setting's control character
            unchanged(true);
        }
    }
    SECTION("a model-only file (format version 1): the parameters change, nothing else") {
        save_checkpoint(bad, SmallMlp::signature(), other.parameters(), {});
        trainer.load(bad);
        unchanged(false);
        CHECK(trainer.checksum() == other.checksum());
    }
    SECTION("load_model: the parameters change, nothing else") {
        trainer.load_model(good);
        unchanged(false);
        CHECK(trainer.checksum() == other.checksum());
    }
    std::filesystem::remove(good);
    std::filesystem::remove(bad);
}

TEST_CASE("OpenMP and TensorParallel given a short team by OpenMP stop and compute nothing",
          "[policy][openmp]") {
    // Inside another parallel region, with nesting off, OpenMP gives a region one thread: the
    // work is cut by worker, and the missing worker's rows were left out unseen.
    const Dataset data = make_blobs(40, 12, 4, 3);
    TrainerOptions o = quiet_options(8);
    o.threads = 2;
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, OpenMP> omp(sgd(), o);
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, TensorParallel> tensor(sgd(), o);
    const std::uint64_t omp_before = omp.checksum(), tensor_before = tensor.checksum();
    const int levels = omp_get_max_active_levels();
    omp_set_max_active_levels(1);
    int outer = 0;
    std::string fit_error, evaluate_error, step_error, tensor_error;
    const auto error_of = [](auto&& call) {
        try {
            call();
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("no ConfigError");
    };
#pragma omp parallel num_threads(2)
    {
        if (omp_get_thread_num() == 0) {
            outer = omp_get_num_threads();
            fit_error = error_of([&] { omp.fit(data, nullptr, 1); });
            evaluate_error = error_of([&] { omp.evaluate(data); });
            step_error = error_of([&] { omp.step(data, std::vector<std::size_t>{0, 1, 2, 3}); });
            tensor_error = error_of([&] { tensor.fit(data, nullptr, 1); });
        }
    }
    omp_set_max_active_levels(levels);
    REQUIRE(outer == 2);
    for (const std::string& e : {fit_error, evaluate_error, step_error})
        CHECK_THAT(e, Catch::Contains("openmp: OpenMP ran 1 thread of the 2 this trainer's workers need, and "
                                      "nothing was computed") &&
                          Catch::Contains("ask for threads = 1 there"));
    CHECK_THAT(tensor_error, Catch::Contains("tensor: OpenMP ran 1 thread of the 2"));
    CHECK(omp.checksum() == omp_before);
    CHECK(tensor.checksum() == tensor_before);
    CHECK(omp.steps_done() == 0);
    // Outside the region the same trainer trains, as Serial with 2 workers taken in turn does.
    TrainerOptions s = o;
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> serial(sgd(), s);
    omp.fit(data, nullptr, 1);
    serial.fit(data, nullptr, 1);
    CHECK(omp.checksum() == serial.checksum());
}

TEST_CASE("Empty sets and a null log stream and raw forward calls that do not fit are refused by name",
          "[policy][data]") {
    const Dataset data = make_blobs(40, 12, 4, 3);
    const Dataset empty = make_blobs(0, 12, 4, 3);
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> trainer(sgd(), quiet_options(8));
    const std::uint64_t untouched = trainer.checksum();
    CHECK_THROWS_WITH(trainer.train_epoch(empty, 1),
                      Catch::Contains("train_epoch: the training dataset is empty"));
    CHECK(trainer.epochs_trained() == 0);
    CHECK_THROWS_WITH(trainer.evaluate(empty), Catch::Contains("evaluate: the dataset is empty"));
    CHECK_THROWS_WITH(trainer.fit(data, &empty, 1), Catch::Contains("fit: the test dataset is empty"));
    CHECK(trainer.checksum() == untouched);

    TrainerOptions o = quiet_options(8);
    o.out = nullptr;
    CHECK_NOTHROW(Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial>(sgd(), o)); // log is off
    o.log = true;
    CHECK_THROWS_WITH((Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial>(sgd(), o)),
                      Catch::Contains("TrainerOptions::out is null while log is on"));

    SmallMlp::Workspace ws(4);
    std::vector<float> params(SmallMlp::param_count), x(8 * 12);
    const StepContext ctx{};
    CHECK_THROWS_WITH(SmallMlp::forward(params, {}, ConstMatrix{x.data(), 8, 12}, ws, ctx),
                      Catch::Contains("Sequential::forward: x is 8 x 12") &&
                          Catch::Contains("the workspace at most 4 rows"));
    CHECK_THROWS_WITH(SmallMlp::forward(std::span<const float>(params).first(10), {},
                                        ConstMatrix{x.data(), 4, 12}, ws, ctx),
                      Catch::Contains("10 parameters and 0 state values given, the model has"));
    CHECK_NOTHROW(SmallMlp::forward(params, {}, ConstMatrix{x.data(), 4, 12}, ws, ctx));
}

TEST_CASE("A loss that is not finite because of the data names the row and not the learning rate",
          "[policy][data]") {
    Dataset data = make_blobs(40, 12, 4, 3);
    data.features[5 * 12 + 7] = std::numeric_limits<float>::quiet_NaN();
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> trainer(sgd(), quiet_options(40));
    CHECK_THROWS_WITH(trainer.step(data, std::vector<std::size_t>{0, 5, 9}),
                      Catch::Contains("at step 0: dataset row 5's features hold NaN or infinity"));
    data.features[5 * 12 + 7] = 0.0f;
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> diverging(SGD({.lr = 1e30f}), quiet_options(40));
    CHECK_THROWS_WITH(diverging.fit(data, nullptr, 3),
                      Catch::Contains("training diverged (try a lower learning rate)"));
}
