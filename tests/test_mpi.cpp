// Distributed policies under mpiexec (CTest runs this with 2 and 3 ranks): MPI and Hybrid must
// reproduce Serial's parameters, with uneven shards, and collectives must not hang or miscount.
// Every collective is called by every rank before any assertion, so a failing check cannot
// leave another rank waiting.
#include <catch2/catch.hpp>

#include <pardl/pardl.hpp>
#include <pardl/policies/hybrid.hpp>
#include <pardl/policies/mpi.hpp>
#include <pardl/policies/tensor_parallel.hpp>
#include <pardl/testing/equivalence.hpp>

#include "policy_fixtures.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

using namespace pardl;
using namespace policy_fixtures;

namespace {

int world_size() {
    return MpiComm{}.size();
}

} // namespace

TEST_CASE("MpiComm collectives", "[mpi]") {
    MpiComm comm;
    const int r = comm.rank(), n = comm.size();
    std::vector<float> v{1.0f, static_cast<float>(r), 2.5f};
    comm.allreduce_sum(std::span<float>(v));
    std::vector<double> d{static_cast<double>(r) + 0.5};
    comm.allreduce_sum(std::span<double>(d));
    std::vector<float> b{static_cast<float>(r), static_cast<float>(r) * 2};
    comm.broadcast(std::span<float>(b), n - 1);
    const double s = comm.sum(1.0);
    const auto lo = comm.min(static_cast<std::uint64_t>(r + 10)),
               hi = comm.max(static_cast<std::uint64_t>(r + 10));
    comm.barrier();
    CHECK(v[0] == static_cast<float>(n));
    CHECK(v[1] == static_cast<float>(n * (n - 1) / 2));
    CHECK(v[2] == 2.5f * static_cast<float>(n));
    CHECK(d[0] == Approx(n * (n - 1) / 2.0 + 0.5 * n));
    CHECK(b[0] == static_cast<float>(n - 1));
    CHECK(b[1] == static_cast<float>(2 * (n - 1)));
    CHECK(s == static_cast<double>(n));
    CHECK(lo == 10);
    CHECK(hi == static_cast<std::uint64_t>(n - 1 + 10));
}

TEMPLATE_TEST_CASE("MPI and Hybrid reproduce Serial", "[mpi][policy]", SGD, Adam) {
    // 203 rows, batch 50: every epoch ends with a 3-row batch; 50 is not divisible by 3.
    const Dataset data = make_blobs(203, 12, 4, 99);
    const auto serial = run<Serial>(data, make_opt<TestType>(), 50, 1, 25);
    const auto mpi = run<MPI>(data, make_opt<TestType>(), 50, 1, 25, /*check_replicas=*/5);
    const auto hybrid = run<Hybrid>(data, make_opt<TestType>(), 50, 2, 25, 5);
    INFO("ranks " << world_size());
    CHECK(testing::max_relative_difference(mpi.params, serial.params) <= tolerance);
    CHECK(testing::max_relative_difference(hybrid.params, serial.params) <= tolerance);
    for (std::size_t s = 0; s < serial.losses.size(); ++s) {
        CHECK(mpi.losses[s] == Approx(serial.losses[s]).epsilon(1e-5));
        CHECK(hybrid.losses[s] == Approx(serial.losses[s]).epsilon(1e-5));
    }
}

TEST_CASE("TensorParallel teams inside MPI ranks reproduce Serial", "[mpi][policy][tensor]") {
    // Model parallelism over the threads of each rank, data parallelism over the ranks: the
    // ranks' gradients, each complete after its team's step, go through the same allreduce.
    using TensorMpi = Policy<TensorParallelExecutor, MpiComm>;
    const Dataset data = make_blobs(203, 40, 5, 99);
    const auto serial = run<Serial, SGD, WideMlp>(data, sgd(), 50, 1, 25);
    const auto tensor = run<TensorMpi, SGD, WideMlp>(data, sgd(), 50, 2, 25, /*check_replicas=*/5);
    INFO("ranks " << world_size());
    CHECK(TensorMpi::name() == "tensor+mpi");
    CHECK(testing::max_relative_difference(tensor.params, serial.params) <= tolerance);
    for (std::size_t s = 0; s < serial.losses.size(); ++s)
        CHECK(tensor.losses[s] == Approx(serial.losses[s]).epsilon(1e-5));
    // Convolutions shared by rows inside each team, their summed gradients then summed over ranks.
    const Dataset images = make_images(90, 2, 8, 8, 5, 31);
    const auto serial_cnn = run<Serial, SGD, ConvMlp>(images, sgd(), 20, 1, 12);
    const auto tensor_cnn = run<TensorMpi, SGD, ConvMlp>(images, sgd(), 20, 2, 12, /*check_replicas=*/5);
    CHECK(testing::max_relative_difference(tensor_cnn.params, serial_cnn.params) <= tolerance);
    for (std::size_t s = 0; s < serial_cnn.losses.size(); ++s)
        CHECK(tensor_cnn.losses[s] == Approx(serial_cnn.losses[s]).epsilon(1e-5));
}

TEST_CASE("MPI reproduces Serial with one worker per rank taken in turn, bit for bit", "[mpi][policy]") {
    // Same split of every batch, same order of the sums (rank order = worker order): the same
    // bits. This is what separates summation-order rounding from any other difference.
    const Dataset data = make_blobs(203, 12, 4, 99);
    const std::size_t ranks = static_cast<std::size_t>(world_size());
    const auto serial = run<Serial>(data, sgd(), 50, ranks, 25);
    const auto mpi = run<MPI>(data, sgd(), 50, 1, 25);
    INFO("ranks " << ranks);
    CHECK(mpi.params == serial.params);
    // The reported loss crosses ranks as a float inside the gradient message, so it is exact
    // only to float precision.
    for (std::size_t s = 0; s < serial.losses.size(); ++s)
        CHECK(mpi.losses[s] == Approx(serial.losses[s]).epsilon(1e-6));
    // With a learning-rate schedule every rank takes the same rate at every step: still the same bits,
    // and not those of the constant rate.
    const Schedule curve = schedule::warmup(5, schedule::cosine(0.05f, 25));
    const auto serial_curve = run<Serial>(data, sgd(), 50, ranks, 25, 0, curve);
    const auto mpi_curve = run<MPI>(data, sgd(), 50, 1, 25, /*check_replicas=*/5, curve);
    CHECK(mpi_curve.params == serial_curve.params);
    CHECK(mpi_curve.params != mpi.params);
}

TEMPLATE_TEST_CASE("Ranks that disagree on the learning rate, or whose schedule fails on one rank, stop "
                   "together",
                   "[mpi][schedule]", MPI, Hybrid) {
    // The replica check cannot see another rate (each rank updates its own slice and shares it),
    // and a schedule that fails on one rank alone must not leave the others in the allreduce.
    const Dataset data = make_blobs(64, 12, 4, 4); // 4 steps an epoch
    const int rank = MpiComm{}.rank();
    TrainerOptions o;
    o.batch = 16;
    o.threads = 1;
    o.log = false;
    o.check_replicas = 1;
    SECTION("another rate on rank 1") {
        Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, TestType> t(
            SGD({.lr = rank == 1 ? 0.01f : 0.05f, .momentum = 0.9f}), o);
        CHECK_THROWS_WITH(t.fit(data, nullptr, 1),
                          Catch::Contains("ranks disagree on the learning rate at step 0"));
    }
    SECTION("a schedule that gives NaN on rank 1 at step 2") {
        // Armed after construction, which compares the ranks' schedules (and would refuse
        // different ones): a schedule that reads state of its own can still part ways later.
        bool armed = false;
        o.schedule = [rank, &armed](std::uint64_t step) {
            return armed && rank == 1 && step == 2 ? std::numeric_limits<float>::quiet_NaN() : 0.05f;
        };
        Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, TestType> t(sgd(), o);
        armed = true;
        CHECK_THROWS_WITH(t.fit(data, nullptr, 1),
                          rank == 1 ? Catch::Contains("schedule gave nan for step 2")
                                    : Catch::Contains("schedule failed on another rank at step 2"));
    }
    SECTION("another schedule on rank 1 is refused at construction") {
        o.schedule = rank == 1 ? schedule::cosine(0.05f, 6) : schedule::cosine(0.05f, 8);
        CHECK_THROWS_WITH((Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, TestType>(sgd(), o)),
                          Catch::Contains("the ranks were given different settings: schedule (this rank: "));
    }
    SECTION("the same schedule on every rank trains") {
        o.schedule = schedule::warmup(2, schedule::cosine(0.05f, 6));
        Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, TestType> t(sgd(), o);
        CHECK_NOTHROW(t.fit(data, nullptr, 2));
    }
}

TEST_CASE("A last batch smaller than the rank count neither hangs nor miscounts", "[mpi]") {
    // 66 rows, batch 64: the second batch has 2 rows, so with 3 ranks one rank gets none.
    const Dataset data = make_blobs(66, 12, 4, 17);
    TrainerOptions o;
    o.batch = 64;
    o.log = false;
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, MPI> trainer(sgd(), o);
    BatchLoader loader(data, 64, o.seed);
    loader.start_epoch(1);
    const StepResult first = trainer.step(data, loader.batch_indices(0));
    const StepResult last = trainer.step(data, loader.batch_indices(1));
    const Evaluation ev = trainer.evaluate(data);
    CHECK(first.samples == 64);
    CHECK(last.samples == 2);
    CHECK(ev.samples == 66);
    CHECK(std::isfinite(last.loss));
}

TEST_CASE("Distributed evaluation counts every test sample exactly once", "[mpi]") {
    const Dataset data = make_blobs(101, 12, 4, 23);
    TrainerOptions o;
    o.batch = 16;
    o.log = false;
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, MPI> dist(sgd(), o);
    const Evaluation d = dist.evaluate(data);
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, Serial> local(sgd(), o);
    const Evaluation s = local.evaluate(data);
    CHECK(d.samples == 101);
    CHECK(d.loss == Approx(s.loss).epsilon(1e-6));
    CHECK(d.accuracy == s.accuracy);
}

TEST_CASE("Parameters start identical on every rank and the replica check sees divergence", "[mpi]") {
    TrainerOptions o;
    o.batch = 8;
    o.log = false;
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, MPI> trainer(sgd(), o);
    MpiComm comm;
    const std::uint64_t h = trainer.checksum();
    const bool same = comm.min(h) == comm.max(h);
    // Corrupt one rank's replica: the check must throw on every rank (not hang, not pass).
    if (comm.rank() == comm.size() - 1) trainer.parameters()[3] += 1.0f;
    bool threw = false;
    try {
        trainer.check_replicas();
    } catch (const NumericalError&) {
        threw = true;
    }
    CHECK(same);
    CHECK(threw);
}

TEST_CASE("Ranks told different epochs or data, or evaluating sets of other sizes, stop together with "
          "ConfigError instead of hanging",
          "[mpi]") {
    MpiComm comm;
    TrainerOptions o;
    o.batch = 8;
    o.log = false;
    const bool last = comm.rank() == comm.size() - 1;
    const Dataset data = make_blobs(32, 12, 4, 2), more = make_blobs(40, 12, 4, 2);
    const auto throws = [](auto&& run) {
        try {
            run();
        } catch (const ConfigError& e) {
            return std::string(e.what()).find("ranks disagree") != std::string::npos;
        }
        return false;
    };
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, MPI> trainer(sgd(), o);
    const bool epochs = throws([&] { trainer.fit(data, nullptr, last ? 1 : 2); });
    const bool rows = throws([&] { trainer.fit(last ? more : data, nullptr, 1); });
    const bool test = throws([&] { trainer.fit(data, last ? &data : nullptr, 1); });
    // Each rank evaluates its share of the rows: sets of other sizes would count a mix of the two.
    const bool evaluated = throws([&] { trainer.evaluate(last ? more : data); });
    // train_epoch alone too: 32 and 48 rows at batch 8 are 4 and 6 steps, and the rank with more
    // waited in its fifth step's allreduce for ever.
    const Dataset most = make_blobs(48, 12, 4, 2);
    const bool one_epoch = throws([&] { trainer.train_epoch(last ? most : data, 1); });
    CHECK(epochs);
    CHECK(rows);
    CHECK(test);
    CHECK(evaluated);
    CHECK(one_epoch);
    CHECK_NOTHROW(trainer.fit(data, &data, 1)); // alike on every rank: trains
}

TEST_CASE("A trainer that cannot be built on one rank fails on every rank instead of hanging", "[mpi]") {
    // Rank 1 alone is given a batch of 0. Throwing there alone would free the trainer's shared
    // windows (a collective) while rank 0 waited in the parameters' broadcast.
    const int rank = MpiComm{}.rank();
    TrainerOptions o;
    o.batch = rank == 1 ? 0 : 16;
    o.log = false;
    const auto build = [&] { Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, MPI> t(sgd(), o); };
    if (rank == 1)
        CHECK_THROWS_WITH(build(), Catch::Contains("batch size must be >= 1"));
    else
        CHECK_THROWS_WITH(build(), Catch::Contains("another rank could not build its trainer"));
    // And every rank can build one afterwards: nothing was left half-made.
    o.batch = 16;
    CHECK_NOTHROW(build());
    // Clipping bounds that differ (rank 1 alone does not clip, or clips elsewhere) fail on every
    // rank, by norm and by value alike.
    for (float TrainerOptions::*bound : {&TrainerOptions::clip_grad_norm, &TrainerOptions::clip_grad_value}) {
        const std::string name =
            bound == &TrainerOptions::clip_grad_norm ? "clip gradient norm" : "clip gradient value";
        for (float other : {0.0f, 2.0f}) {
            o.*bound = rank == 1 ? other : 1.0f;
            INFO("rank 1's bound " << other);
            const std::string mine = rank == 1 && other == 0.0f ? "off" : rank == 1 ? "2" : "1";
            CHECK_THROWS_WITH(build(),
                              Catch::Contains("the ranks were given different settings: " + name +
                                              " (this rank: " + mine + "); every rank must train alike"));
        }
        o.*bound = 1.0f;
        CHECK_NOTHROW(build());
        o.*bound = 0.0f;
    }
}

TEST_CASE("Ranks given different settings stop together at construction, each naming its own values",
          "[mpi]") {
    // Another seed on one rank would draw other batches there (some images twice in a step, others
    // never), another momentum or batch a step that no serial run takes: found before any step.
    const int rank = MpiComm{}.rank();
    const bool odd = rank == 1;
    TrainerOptions o;
    o.batch = 16;
    o.log = false;
    const auto build = [&](SGD opt) {
        Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, MPI> t(std::move(opt), o);
    };
    const auto sgd_with = [](float momentum, bool nesterov) {
        return SGD({.lr = 0.05f, .momentum = momentum, .nesterov = nesterov});
    };
    CHECK_NOTHROW(build(sgd_with(0.9f, false)));
    o.seed = odd ? 7 : 42;
    CHECK_THROWS_WITH(build(sgd_with(0.9f, false)),
                      Catch::Contains("the ranks were given different settings: seed (this rank: " +
                                      std::string(odd ? "7" : "42") + "); every rank must train alike"));
    // Two at once are both named; the optimizer's own settings and its name (Nesterov's) count.
    o.seed = 42;
    o.batch = odd ? 12 : 16;
    CHECK_THROWS_WITH(
        build(sgd_with(odd ? 0.5f : 0.9f, false)),
        Catch::Contains("different settings: batch (this rank: " + std::string(odd ? "12" : "16") +
                        "), momentum (this rank: " + std::string(odd ? "0.5" : "0.9") + ")"));
    o.batch = 16;
    CHECK_THROWS_WITH(build(sgd_with(0.9f, odd)),
                      Catch::Contains("different settings: optimizer (this rank: " +
                                      std::string(odd ? "sgd-nesterov" : "sgd") + ")"));
    // A program's own settings (the examples' training data) are compared too, and lists that do
    // not line up are refused as such.
    o.settings = {{"training data", odd ? "300 images" : "640 images"}};
    CHECK_THROWS_WITH(build(sgd_with(0.9f, false)),
                      Catch::Contains("different settings: training data (this rank: " +
                                      std::string(odd ? "300" : "640") + " images)"));
    o.settings = odd ? std::vector<std::pair<std::string, std::string>>{{"training data", "640 images"}}
                     : std::vector<std::pair<std::string, std::string>>{};
    CHECK_THROWS_WITH(build(sgd_with(0.9f, false)), Catch::Contains("not the same list of settings"));
    o.settings.clear();
    CHECK_NOTHROW(build(sgd_with(0.9f, false)));
    // Replica checks are collectives: another interval on one rank would leave it waiting in one.
    o.check_replicas = odd ? 5 : 10;
    CHECK_THROWS_WITH(build(sgd_with(0.9f, false)),
                      Catch::Contains("different settings: check replicas every (this rank: " +
                                      std::string(odd ? "5" : "10") + ")"));
    o.check_replicas = 0;
    // Another model on one rank (another program): one with as many parameters, and one with more.
    using OtherActivation = Sequential<Input<12>, Dense<16>, ReLU, Dense<9>, ReLU, Dense<4>>;
    using OtherWidth = Sequential<Input<12>, Dense<16>, Tanh, Dense<9>, ReLU, Dense<5>>;
    static_assert(OtherActivation::param_count == SmallMlp::param_count);
    const auto build_as = [&]<class M>(M*) {
        Trainer<M, SoftmaxCrossEntropy, SGD, MPI> t(sgd_with(0.9f, false), o);
    };
    CHECK_THROWS_WITH(odd ? build_as(static_cast<OtherActivation*>(nullptr)) : build(sgd_with(0.9f, false)),
                      Catch::Contains("different settings: model (this rank: " +
                                      (odd ? OtherActivation::signature() : SmallMlp::signature()) + ")"));
    CHECK_THROWS_WITH(odd ? build_as(static_cast<OtherWidth*>(nullptr)) : build(sgd_with(0.9f, false)),
                      Catch::Contains("different settings: model (this rank: " +
                                      (odd ? OtherWidth::signature() : SmallMlp::signature()) + ")"));
    CHECK_NOTHROW(build(sgd_with(0.9f, false)));
}

TEST_CASE("Checkpoints written by rank 0 load on every rank", "[mpi]") {
    MpiComm comm;
    const auto dir = std::filesystem::temp_directory_path() / "pardl-test-mpi-ckpt";
    if (comm.rank() == 0) std::filesystem::create_directories(dir);
    comm.barrier();
    const auto file = dir / "model.ckpt";
    const Dataset data = make_blobs(64, 12, 4, 2);
    TrainerOptions o;
    o.batch = 16;
    o.log = false;
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, MPI> a(sgd(), o);
    testing::train_steps(a, data, 3);
    a.save(file);
    o.seed = 999; // different initial parameters
    Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, MPI> b(sgd(), o);
    b.load(file);
    const bool equal = std::equal(a.parameters().begin(), a.parameters().end(), b.parameters().begin());
    bool missing_threw = false;
    try {
        b.load(dir / "does-not-exist.ckpt");
    } catch (const CheckpointError& e) {
        // Every rank says why, not only that rank 0 failed.
        INFO(e.what());
        missing_threw = std::string(e.what()).find("cannot open checkpoint") != std::string::npos;
    }
    comm.barrier();
    if (comm.rank() == 0) std::filesystem::remove_all(dir);
    CHECK(equal);
    CHECK(missing_threw);
}

TEST_CASE("A CNN with synchronized batch norm under MPI and Hybrid reproduces Serial", "[mpi][policy][cnn]") {
    const Dataset data = make_images(95, 1, 8, 8, 5, 31); // batch 20 over 3 ranks: 7/7/6; last batch 15
    const auto serial = run<Serial, SGD, SmallCnn>(data, sgd(), 20, 1, 15);
    const auto mpi = run<MPI, SGD, SmallCnn>(data, sgd(), 20, 1, 15, 5);
    const auto hybrid = run<Hybrid, SGD, SmallCnn>(data, sgd(), 20, 2, 15, 5);
    INFO("ranks " << world_size());
    CHECK(testing::max_relative_difference(mpi.params, serial.params) <= tolerance);
    CHECK(testing::max_relative_difference(hybrid.params, serial.params) <= tolerance);
}

// ---- the shared-memory fast path of MpiComm::allreduce_sum ----------------------------------

namespace {

// Small integers, so every sum is exact in float whatever the order.
float shm_value(int rank, std::size_t i, int round) {
    return static_cast<float>((rank + 1 + round) * static_cast<int>(i % 97 + 1));
}
float shm_expected(int ranks, std::size_t i, int round) {
    int s = 0;
    for (int r = 0; r < ranks; ++r) s += r + 1 + round;
    return static_cast<float>(s * static_cast<int>(i % 97 + 1));
}
std::uint64_t fnv1a(std::span<const float> v) {
    std::uint64_t h = 1469598103934665603ull;
    for (float x : v) {
        std::uint32_t u = 0;
        std::memcpy(&u, &x, sizeof u);
        for (int b = 0; b < 4; ++b) h = (h ^ ((u >> (8 * b)) & 0xffu)) * 1099511628211ull;
    }
    return h;
}

struct ShmOutcome {
    std::size_t n = 0;
    bool shared = false;
    bool exact = true;
    bool identical = true;
};

// Fills, reduces and checks `rounds` times; every rank makes the same collective calls.
ShmOutcome reduce_rounds(MpiComm& comm, std::size_t n, int rounds) {
    ShmOutcome out;
    out.n = n;
    MpiComm::ReduceBuffer buf = comm.allocate(n);
    out.shared = buf.shared();
    for (int t = 0; t < rounds; ++t) {
        for (std::size_t i = 0; i < n; ++i) buf[i] = shm_value(comm.rank(), i, t);
        comm.allreduce_sum(buf); // the implicit span conversion takes the shared path too
        for (std::size_t i = 0; i < n; ++i)
            out.exact = out.exact && buf[i] == shm_expected(comm.size(), i, t);
        const std::uint64_t h = fnv1a(buf.span());
        out.identical = out.identical && comm.min(h) == comm.max(h);
    }
    return out;
}

const std::size_t shm_sizes[] = {1, 3, 15, 16, 17, 1000, 235149};

// Sets PARDL_MPI_SHM for the lifetime of the object (on every rank).
struct ScopedShmEnv {
    std::string old;
    bool had = false;
    explicit ScopedShmEnv(const char* value) {
        if (const char* v = std::getenv("PARDL_MPI_SHM")) {
            old = v;
            had = true;
        }
        setenv("PARDL_MPI_SHM", value, 1);
    }
    ~ScopedShmEnv() {
        if (had)
            setenv("PARDL_MPI_SHM", old.c_str(), 1);
        else
            unsetenv("PARDL_MPI_SHM");
    }
};

bool shm_disabled_by_env() {
    const char* v = std::getenv("PARDL_MPI_SHM");
    return v && std::string(v) == "0";
}

} // namespace

TEST_CASE("Shared reduce buffers sum exactly and identically on every rank", "[mpi][shm]") {
    MpiComm comm;
    std::vector<ShmOutcome> outcomes;
    for (std::size_t n : shm_sizes) outcomes.push_back(reduce_rounds(comm, n, 3));
    // One machine: every rank shares the node, so the fast path is on whenever there are peers.
    CHECK(comm.shared_memory() == (comm.size() > 1 && !shm_disabled_by_env()));
    for (const ShmOutcome& o : outcomes) {
        INFO("n = " << o.n << ", ranks " << comm.size());
        CHECK(o.shared == comm.shared_memory());
        CHECK(o.exact);
        CHECK(o.identical);
    }
}

TEST_CASE("Spans that are not exactly a shared buffer take the MPI_Allreduce path", "[mpi][shm]") {
    MpiComm comm;
    const std::size_t n = 1000;
    MpiComm::ReduceBuffer a = comm.allocate(n);
    MpiComm::ReduceBuffer b = comm.allocate(n); // two live windows at once
    std::vector<float> plain(n);
    for (std::size_t i = 0; i < n; ++i) {
        a[i] = shm_value(comm.rank(), i, 0);
        b[i] = shm_value(comm.rank(), i, 1);
        plain[i] = shm_value(comm.rank(), i, 2);
    }
    comm.allreduce_sum(std::span<float>(plain));
    comm.allreduce_sum(a.span().first(n - 1)); // a prefix: the plain path; a[n-1] stays local
    comm.allreduce_sum(b.span());
    MpiComm::ReduceBuffer moved = std::move(b);
    moved.zero();
    comm.allreduce_sum(moved.span()); // still registered after the move: sums zeros
    bool plain_ok = true, a_ok = true, moved_ok = true;
    for (std::size_t i = 0; i < n; ++i) {
        plain_ok = plain_ok && plain[i] == shm_expected(comm.size(), i, 2);
        a_ok = a_ok && a[i] == (i + 1 < n ? shm_expected(comm.size(), i, 0) : shm_value(comm.rank(), i, 0));
        moved_ok = moved_ok && moved[i] == 0.0f;
    }
    CHECK(plain_ok);
    CHECK(a_ok);
    CHECK(moved_ok);
    CHECK(b.empty());
    CHECK(moved.shared() == comm.shared_memory());
}

TEST_CASE("The hierarchical path (nodes emulated as groups of 2 ranks) sums exactly", "[mpi][shm]") {
    // With an even rank count this is 2-rank 'nodes' joined by MPI_Allreduce; with an odd one the
    // groups differ in size, so the shared path must switch itself off.
    MpiComm comm(MPI_COMM_WORLD, 2);
    std::vector<ShmOutcome> outcomes;
    for (std::size_t n : shm_sizes) outcomes.push_back(reduce_rounds(comm, n, 2));
    CHECK(comm.node_size() == std::min(2, comm.size() - (comm.rank() / 2) * 2));
    CHECK(comm.shared_memory() == (comm.size() % 2 == 0 && !shm_disabled_by_env()));
    for (const ShmOutcome& o : outcomes) {
        INFO("n = " << o.n << ", ranks " << comm.size());
        CHECK(o.shared == comm.shared_memory());
        CHECK(o.exact);
        CHECK(o.identical);
    }
}

TEST_CASE("PARDL_MPI_SHM=0 turns the shared path off", "[mpi][shm]") {
    std::vector<ShmOutcome> outcomes;
    bool usable = true;
    {
        ScopedShmEnv off("0");
        MpiComm comm;
        usable = comm.shared_memory();
        for (std::size_t n : shm_sizes) outcomes.push_back(reduce_rounds(comm, n, 2));
    }
    CHECK_FALSE(usable);
    for (const ShmOutcome& o : outcomes) {
        INFO("n = " << o.n);
        CHECK_FALSE(o.shared);
        CHECK(o.exact);
        CHECK(o.identical);
    }
}

TEST_CASE("MPI training without the shared path reproduces Serial", "[mpi][policy][shm]") {
    const Dataset data = make_blobs(203, 12, 4, 99);
    const auto serial = run<Serial>(data, sgd(), 50, 1, 10);
    testing::TrainedRun mpi;
    {
        ScopedShmEnv off("0");
        mpi = run<MPI>(data, sgd(), 50, 1, 10, /*check_replicas=*/5);
    }
    CHECK(testing::max_relative_difference(mpi.params, serial.params) <= tolerance);
}

TEST_CASE("Clipped training under MPI, Hybrid and tensor+mpi reproduces Serial", "[mpi][policy][clip]") {
    // Every rank reduces the whole gradient and takes the same clipping factor from it; uneven
    // shards (50 rows over 3 ranks, 3-row batches at each epoch's end).
    const Dataset data = make_blobs(203, 40, 5, 99);
    const std::size_t ranks = static_cast<std::size_t>(world_size());
    // A bound well below the first step's gradient norm (checked below, reported by a bound no
    // gradient reaches), so that clipping changes the run.
    constexpr float bound = 0.3f;
    using TensorMpi = Policy<TensorParallelExecutor, MpiComm>;
    const auto serial = run<Serial, SGD, WideMlp>(data, sgd(), 50, 1, 25, 0, {}, bound);
    const auto mpi = run<MPI, SGD, WideMlp>(data, sgd(), 50, 1, 25, /*check_replicas=*/5, {}, bound);
    const auto hybrid = run<Hybrid, SGD, WideMlp>(data, sgd(), 50, 2, 25, 5, {}, bound);
    const auto tensor = run<TensorMpi, SGD, WideMlp>(data, sgd(), 50, 2, 25, 5, {}, bound);
    // Same split of every batch, same order of the sums: the same norm and the same bits.
    const auto serial_turns = run<Serial, SGD, WideMlp>(data, sgd(), 50, ranks, 25, 0, {}, bound);
    const auto unclipped = run<MPI, SGD, WideMlp>(data, sgd(), 50, 1, 25);
    const auto adam_serial = run<Serial, Adam, WideMlp>(data, adam(), 50, 1, 25, 0, {}, bound);
    const auto adam_mpi = run<MPI, Adam, WideMlp>(data, adam(), 50, 1, 25, 5, {}, bound);
    testing::TrainedRun unshared;
    {
        ScopedShmEnv off("0");
        unshared = run<MPI, SGD, WideMlp>(data, sgd(), 50, 1, 25, 5, {}, bound);
    }
    // The norms the bound is set against.
    TrainerOptions o;
    o.batch = 50;
    o.seed = 1234;
    o.log = false;
    o.clip_grad_norm = 1e30f;
    Trainer<WideMlp, SoftmaxCrossEntropy, SGD, MPI> probe(sgd(), o);
    BatchLoader loader(data, 50, o.seed, true, false);
    loader.start_epoch(1);
    const StepResult first = probe.step(data, loader.batch_indices(0));
    INFO("ranks " << ranks);
    CHECK(first.grad_norm > 2 * bound);
    CHECK_FALSE(first.clipped);
    CHECK(testing::max_relative_difference(mpi.params, serial.params) <= tolerance);
    CHECK(testing::max_relative_difference(hybrid.params, serial.params) <= tolerance);
    CHECK(testing::max_relative_difference(tensor.params, serial.params) <= tolerance);
    CHECK(testing::max_relative_difference(unshared.params, serial.params) <= tolerance);
    CHECK(mpi.params == serial_turns.params);
    CHECK(testing::max_relative_difference(unclipped.params, serial.params) > 100 * tolerance);
    CHECK(testing::max_relative_difference(adam_mpi.params, adam_serial.params) <= tolerance);
    for (std::size_t s = 0; s < serial.losses.size(); ++s) {
        CHECK(mpi.losses[s] == Approx(serial.losses[s]).epsilon(1e-5));
        CHECK(hybrid.losses[s] == Approx(serial.losses[s]).epsilon(1e-5));
    }
}

TEST_CASE("Training clipped by value under MPI, Hybrid and tensor+mpi reproduces Serial",
          "[mpi][policy][clip]") {
    // Each slice's owner clamps its slice of the mean gradient inside the update; uneven shards.
    const Dataset data = make_blobs(203, 40, 5, 99);
    const std::size_t ranks = static_cast<std::size_t>(world_size());
    const auto clamped = [&]<class Policy>(std::size_t threads, float bound) {
        return testing::train_fresh<WideMlp, Policy>(
            data, sgd(),
            {.batch = 50, .threads = threads, .steps = 25, .check_replicas = 5, .clip_grad_value = bound});
    };
    constexpr float bound = 2e-3f; // below the largest elements of the mean gradients
    using TensorMpi = Policy<TensorParallelExecutor, MpiComm>;
    const auto serial = clamped.template operator()<Serial>(1, bound);
    const auto mpi = clamped.template operator()<MPI>(1, bound);
    const auto hybrid = clamped.template operator()<Hybrid>(2, bound);
    const auto tensor = clamped.template operator()<TensorMpi>(2, bound);
    testing::TrainedRun unshared;
    {
        ScopedShmEnv off("0");
        unshared = clamped.template operator()<MPI>(1, bound);
    }
    INFO("ranks " << ranks);
    CHECK(testing::max_relative_difference(mpi.params, serial.params) <= tolerance);
    CHECK(testing::max_relative_difference(hybrid.params, serial.params) <= tolerance);
    CHECK(testing::max_relative_difference(tensor.params, serial.params) <= tolerance);
    CHECK(testing::max_relative_difference(unshared.params, serial.params) <= tolerance);
    // Same split of every batch, same order of the sums: the same bits.
    CHECK(mpi.params == clamped.template operator()<Serial>(ranks, bound).params);
    // The bound mattered, and one no element reaches is the unclipped run, bit for bit.
    const auto unclipped = run<MPI, SGD, WideMlp>(data, sgd(), 50, 1, 25);
    CHECK(testing::max_relative_difference(unclipped.params, mpi.params) > 100 * tolerance);
    CHECK(clamped.template operator()<MPI>(1, 1e30f).params == unclipped.params);
}

TEST_CASE("write_timeline joins every rank's events into one trace file", "[mpi][timeline]") {
    MpiComm comm;
    const int n = comm.size();
    const Dataset data = make_blobs(90, 12, 4, 17);
    Timeline timeline(1);
    {
        TrainerOptions o;
        o.batch = 30;
        o.threads = 1;
        o.log = false;
        o.timeline = &timeline;
        Trainer<SmallMlp, SoftmaxCrossEntropy, SGD, MPI> trainer(sgd(), o);
        testing::train_steps(trainer, data, 3);
    }
    // The last rank's trace is made longer than one of write_timeline's chunks (3 x 2^16 bytes),
    // so that it crosses in several.
    const std::size_t extra = comm.rank() == n - 1 ? 8000 : 0;
    for (std::size_t i = 0; i < extra; ++i) {
        const auto t = Clock::now();
        timeline.record(0, "padding-event-name-long-enough-to-add-up", t, t);
    }
    // One file per rank count: the np2 and np3 runs may share the directory at the same time.
    // Only rank 0 touches the filesystem: the other ranks name a folder their node does not have,
    // as on a cluster whose nodes share no filesystem.
    const std::filesystem::path file = comm.rank() == 0 ? "test_mpi_timeline_np" + std::to_string(n) + ".json"
                                                        : "/nonexistent-pardl-node/trace.json";
    // A write that fails on rank 0 before it starts (no folder for its temporary file) still
    // takes every rank's chunks, and every rank throws.
    const std::filesystem::path unwritable =
        comm.rank() == 0 ? "/nonexistent-pardl-dir/trace.json" : file.string();
    CHECK_THROWS_WITH(write_timeline(timeline, comm, unwritable),
                      comm.rank() == 0
                          ? Catch::Contains("cannot create a temporary file in /nonexistent-pardl-dir")
                          : Catch::Contains("rank 0 could not write the timeline"));
    write_timeline(timeline, comm, file); // collective; the last one of this case
    if (comm.rank() != 0) return;
    std::string text;
    {
        std::ifstream in(file);
        text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    auto count = [&](const std::string& s) {
        std::size_t c = 0;
        for (std::size_t p = text.find(s); p != std::string::npos; p = text.find(s, p + 1)) ++c;
        return c;
    };
    CHECK(text.rfind("{\"traceEvents\":[", 0) == 0);
    CHECK(text.find("\"displayTimeUnit\":\"ms\"") != std::string::npos);
    CHECK(count("\"ranks\":" + std::to_string(n)) == 1);
    for (int r = 0; r < n; ++r) {
        INFO("rank " << r);
        CHECK(count("\"args\":{\"name\":\"rank " + std::to_string(r) + "\"}") == 1);
        // Worker 0's complete events (data, forward, backward per step) end with pid and tid 0.
        CHECK(count(",\"pid\":" + std::to_string(r) + ",\"tid\":0}") == (r == n - 1 ? 9 + 8000 : 9));
    }
    CHECK(count("{\"name\":\"padding-event-name-long-enough-to-add-up\"") == 8000);
    CHECK(text.size() > 3 * 3 * (std::size_t{1} << 16)); // the last rank's part alone: more than 3 chunks
    // The trace is the only file it writes.
    for (const auto& entry : std::filesystem::directory_iterator("."))
        CHECK(entry.path().filename().string().find(file.filename().string() + ".") == std::string::npos);
    // Several ranks: the master's phases are separate (the update runs inside the allreduce, on
    // the ranks that own a slice of it).
    auto events = [&](const char* phase) {
        return count(std::string("{\"name\":\"") + phase + "\",\"cat\":\"step\",\"ph\":\"X\"");
    };
    for (const char* phase : {"data", "forward", "backward", "reduce_workers", "allreduce", "step"}) {
        INFO(phase);
        CHECK(events(phase) == static_cast<std::size_t>(3 * n));
    }
    CHECK(events("update") >= 3);
    std::filesystem::remove(file);
}

namespace {
/// `before` epochs, a checkpoint, and `after` more epochs in a new trainer, against one run of
/// before + after epochs; every trainer gets its communicator from make_comm(). Returns whether
/// the resumed run ended with the whole run's parameters, bit for bit, on this rank.
template <class Policy, class Opt, class MakeComm>
bool resumes_exactly(const Dataset& data, std::size_t threads, MakeComm&& make_comm) {
    MpiComm world;
    const auto dir = std::filesystem::temp_directory_path() / "pardl-test-mpi-resume";
    if (world.rank() == 0) std::filesystem::create_directories(dir);
    world.barrier();
    const auto file = dir / "resume.ckpt";
    TrainerOptions o;
    o.batch = 20;
    o.threads = threads;
    o.log = false;
    Trainer<SmallMlp, SoftmaxCrossEntropy, Opt, Policy> whole(make_opt<Opt>(), o, make_comm());
    whole.fit(data, nullptr, 3);
    Trainer<SmallMlp, SoftmaxCrossEntropy, Opt, Policy> first(make_opt<Opt>(), o, make_comm());
    first.fit(data, nullptr, 2);
    first.save(file);
    Trainer<SmallMlp, SoftmaxCrossEntropy, Opt, Policy> resumed(make_opt<Opt>(), o, make_comm());
    const bool nothing_differs = resumed.load(file).empty();
    resumed.fit(data, nullptr, 1);
    const bool same = resumed.checksum() == whole.checksum() && resumed.steps_done() == whole.steps_done() &&
                      resumed.epochs_trained() == 3;
    // Another seed is reported, alike on every rank (rank 0 reads the file and shares the text).
    TrainerOptions reseeded_options = o;
    reseeded_options.seed = 7;
    Trainer<SmallMlp, SoftmaxCrossEntropy, Opt, Policy> reseeded(make_opt<Opt>(), reseeded_options,
                                                                 make_comm());
    const bool seed_reported =
        reseeded.load(file) == std::vector<std::string>{"seed: 42 in the checkpoint, 7 here"};
    // Rank 0's settings match the file, but rank 1 runs another number of workers (the one
    // setting ranks may hold apart, a node with other cores): the ranks' own differ.
    TrainerOptions mixed_options = o;
    if (world.rank() == 1) mixed_options.threads = threads + 1;
    Trainer<SmallMlp, SoftmaxCrossEntropy, Opt, Policy> mixed(make_opt<Opt>(), mixed_options, make_comm());
    const bool ranks_reported =
        mixed.load(file) ==
        std::vector<std::string>{"the ranks' own settings differ (only rank 0's were compared)"};
    world.barrier();
    if (world.rank() == 0) std::filesystem::remove_all(dir);
    INFO("settings reported where none differ: " << !nothing_differs << "; seed reported: " << seed_reported
                                                 << "; ranks that differ reported: " << ranks_reported);
    CHECK(nothing_differs);
    CHECK(seed_reported);
    CHECK(ranks_reported);
    return same;
}
} // namespace

TEMPLATE_TEST_CASE("A run resumed from a checkpoint continues bit for bit on every rank", "[mpi][checkpoint]",
                   SGD, Adam) {
    // Where ranks split the update (the shared-memory path), each rank's optimizer state is
    // current only on its own slice: the checkpoint must gather every slice from its owner.
    const Dataset data = make_blobs(95, 12, 4, 21); // batch 20 over 3 ranks: 7/7/6; last batch 15
    INFO("ranks " << world_size());
    CHECK(resumes_exactly<MPI, TestType>(data, 1, [] { return MpiComm{}; }));
    CHECK(resumes_exactly<Hybrid, TestType>(data, 2, [] { return MpiComm{}; }));
    // Nodes emulated as groups of 2 ranks: ranks with the same place in their node own the same
    // slice (with 3 ranks the groups differ in size, and every rank updates everything).
    CHECK(resumes_exactly<MPI, TestType>(data, 1, [] { return MpiComm(MPI_COMM_WORLD, 2); }));
    {
        ScopedShmEnv off("0"); // every rank updates every parameter
        CHECK(resumes_exactly<MPI, TestType>(data, 1, [] { return MpiComm{}; }));
    }
}
