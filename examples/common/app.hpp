// Shared plumbing of pardl's example programs (not part of the library): the common run flags,
// run_example() which parses them before MPI starts and turns every failure on any rank into a
// clear message and a prompt exit of the whole job, and the --json run record.
//
// CLI11 and nlohmann-json appear only in app.cpp, which CMake compiles once into the
// pardl_example_common library that every example program links: their headers alone take
// longer to compile than pardl and a whole model (measured in docs/performance.md), and no
// example needs them in its own translation unit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "pardl/comm/launcher.hpp"
#include "pardl/core/errors.hpp"
#include "pardl/data/idx.hpp"
#include "pardl/train/trainer.hpp"

namespace CLI {
class App;
}

namespace pardl::examples {

/// The flags every example understands.
struct RunOptions {
    std::filesystem::path data = pardl::default_fashion_mnist_dir;
    std::size_t epochs = 5, batch = 64, limit = 0, test_limit = 0, threads = 0, check_replicas = 0;
    double lr = 0.01, momentum = 0.9;
    double weight_decay = 0;              ///< --weight-decay: L2 penalty (SGD, Adam), 0: none
    bool nesterov = false;                ///< --nesterov: SGD's Nesterov momentum
    std::string lr_schedule = "constant"; ///< --lr-schedule (LrScheduleSpec)
    std::size_t warmup_epochs = 0;        ///< --warmup-epochs
    double clip_grad_norm = 0;            ///< --clip-grad-norm (0: no clipping)
    double clip_grad_value = 0;           ///< --clip-grad-value (0: no clipping)
    std::string optimizer = "sgd";
    std::uint64_t seed = 42;
    std::string save, json;
    std::string resume;           ///< checkpoint to continue from (Trainer::load)
    bool auto_resume = false;     ///< --auto-resume: resume from the --save file when it exists
    std::size_t total_epochs = 0; ///< --total-epochs: train up to this many in all (0: --epochs more)
    std::string timeline;         ///< Chrome trace of every step's phases (all ranks in one file)
    bool quiet = false;
    bool keep_subnormals = false; ///< TrainerOptions::flush_subnormals = false
    std::size_t save_every = 0;   ///< --save-every: also save after every N epochs (unset: at the end only)
    int fail_on_rank = -1;        ///< test hook: this rank throws DataError("injected failure") after loading
    /// Test hook: after this epoch (and --save-every's save of it; the final save comes after fit)
    /// every rank throws, or the --fail-on-rank rank alone.
    std::size_t fail_after_epoch = 0;
};

/// --lr-schedule: how the learning rate moves, counted in epochs (steps per epoch = ceil(images /
/// batch)), from the base rate (--lr or the optimizer's default). The schedule is a function of the
/// step count alone, which a checkpoint keeps: a run resumed with the same flags goes on along the
/// same curve, and one given another schedule gets a note from Trainer::load.
struct LrScheduleSpec {
    enum class Kind { constant, step, multistep, cosine };
    Kind kind = Kind::constant;
    std::vector<std::size_t> epochs; ///< step: {every}; multistep: the milestones; cosine: {length}
    double gamma = 0.1;              ///< step and multistep: the factor at each decay
    double min_lr = 0.0;             ///< cosine: the rate it ends at
};

/// The most epochs --lr-schedule and --warmup-epochs take: enough for any run, and small enough
/// that epochs x steps per epoch cannot overflow the step count.
inline constexpr std::size_t max_schedule_epochs = 1000000;

/// Parses "constant", "step:EVERY[:GAMMA]", "multistep:E1,E2,...[:GAMMA]" or
/// "cosine:EPOCHS[:MIN_LR]". @throws ConfigError saying what is wrong.
LrScheduleSpec parse_lr_schedule(const std::string& spec);

/// A data set as text: its image count, a hash of its labels (FNV-1a over their bytes) and a CRC-32
/// of its pixels (their floats' bytes; zlib's CRC-32 reads the 188 MB of Fashion-MNIST's training
/// images in under a tenth of a second, where FNV-1a, a byte at a time, would take several times
/// longer). It tells another --limit or other data apart, as a checkpoint setting and between
/// ranks, down to a single pixel.
std::string data_fingerprint(const Dataset& data);

/// The Schedule for `spec` at base rate lr, after `warmup_epochs` of linear warm-up (a warm-up
/// delays the schedule: its epochs count from the warm-up's end, as PyTorch's SequentialLR).
/// Empty for a constant rate without warm-up: the optimizer keeps its own rate, so that a resumed
/// run takes the checkpoint's. @throws ConfigError for values the schedule cannot use.
Schedule make_lr_schedule(const LrScheduleSpec& spec, std::size_t warmup_epochs, float lr,
                          std::uint64_t steps_per_epoch);

/// An example's command line: the common flags, bound to a RunOptions, and the example's own.
class CommandLine {
public:
    CommandLine(const std::string& description, RunOptions& options);
    ~CommandLine();
    CommandLine(const CommandLine&) = delete;
    CommandLine& operator=(const CommandLine&) = delete;

    /// Adds one of the example's own on/off flags.
    void add_flag(const std::string& name, bool& value, const std::string& help);
    /// Parses the flags into the bound options. Returns nothing to go on, or the exit code to stop
    /// with: 0 after --help, 2 for a bad flag. The help or the error is printed by the process
    /// that the launcher calls rank 0 only (MPI has not started yet).
    std::optional<int> parse(int argc, char** argv);
    /// Whether the flag `name` (e.g. "--lr") was given.
    bool given(const std::string& name) const;
    const RunOptions& options() const { return options_; }
    /// What CLI11 said about the flags when parse() failed (printed only on rank 0 by parse).
    const std::string& parse_error() const { return parse_error_; }
    /// Every flag's value as given, or its default where not given, by name ("--seed", "42"),
    /// a number written as its value ("07" as "7", "1e-1" as "0.1"; a file name as given),
    /// except those that ranks may hold apart: --data (a node's own mount of the same files, which
    /// the trainer compares by content) and --threads (a node's own core count); --help neither.
    std::vector<std::pair<std::string, std::string>> rank_shared_flags() const;

private:
    RunOptions& options_;
    std::unique_ptr<CLI::App> app_;
    std::string parse_error_;
};

namespace detail {
/// The rank mpiexec gave this process and how many it started, read before MPI is initialised
/// (0 and 1 when not launched by one): pardl/comm/launcher.hpp.
using pardl::detail::launcher_rank;
using pardl::detail::launcher_size;
using pardl::detail::speaks_for_job;
/// std::thread::hardware_concurrency(), at least 1.
unsigned hardware_cores();

/// The flags (CommandLine::rank_shared_flags) in which this rank differs from another, as
/// "--seed (this rank: 7), --save (this rank: not given)"; empty where every rank was given the
/// same. Ranks given different flags would hang (a --save, --timeline, --resume or
/// --check-replicas on some ranks only joins collectives the others never reach) or train apart.
/// A collective of Env: every rank calls it.
template <class Env>
std::string flags_differing_between_ranks(const std::vector<std::pair<std::string, std::string>>& flags) {
    if (Env::world_size() == 1) return {};
    const std::optional<std::string> differ =
        pardl::differing_across_ranks(flags, [](std::uint64_t v) { return Env::max_over_ranks(v); });
    return differ ? *differ : "other flags altogether (ranks running different programs)";
}
} // namespace detail

/// The learning rate actually used: --lr if given, else the optimizer's customary default.
inline double effective_lr(const CommandLine& cli) {
    const RunOptions& o = cli.options();
    if (!cli.given("--lr") && o.optimizer == "adam") return 1e-3;
    return o.lr;
}

/// Throws ConfigError unless every output the flags name (--save, --json, --timeline) can be
/// written: its folder exists and is writable, and it is not itself a folder. Checked before
/// training, so that a typo in a path does not cost the run it was meant to keep.
void require_writable_outputs(const RunOptions& o);

/// Throws ConfigError unless --resume is empty or names a regular file. Rank 0 alone reads the
/// checkpoint (and shares it), so rank 0 alone checks: the other ranks' nodes need not have it.
void require_resume_file(const RunOptions& o);

/// Throws the test hooks' DataError. Called with after_epoch 0 once the data is loaded: fails the
/// --fail-on-rank rank unless --fail-after-epoch is given. Called after each epoch: fails after
/// the --fail-after-epoch epoch, on the --fail-on-rank rank or, if none is given, on every rank.
inline void maybe_inject_failure(const RunOptions& o, int rank, std::size_t after_epoch = 0) {
    if (after_epoch != o.fail_after_epoch) return;
    const bool here = o.fail_on_rank == rank || (after_epoch > 0 && o.fail_on_rank < 0);
    if (!here) return;
    throw pardl::DataError("injected failure on rank " + std::to_string(rank) +
                           (after_epoch > 0
                                ? " after epoch " + std::to_string(after_epoch) + " (--fail-after-epoch)"
                                : std::string(" (--fail-on-rank)")));
}

/// Parses the flags, starts the policy's process environment (MPI_Init for MPI policies), runs
/// `body` and maps failures to exit codes: 0 success (and --help), 2 bad flags or ConfigError,
/// 1 DataError and anything else. With several ranks a failure on any rank ends every rank
/// (MPI_Abort), so a job never hangs on a collective that a dead rank will not join.
template <class Policy, class Fn>
int run_example(int argc, char** argv, CommandLine& cli, Fn&& body) {
    using Env = typename Policy::communicator::Environment;
    const int launch_rank = detail::launcher_rank();

    // Flags first: a typo gives CLI11's message once (rank 0) and exit 2 on every rank, without
    // MPI_Abort noise. A process alone stops at once. Under a launcher with several ranks every
    // rank must meet the others in MPI first: ranks given different flags (an MPMD line, a
    // wrapper per rank) would otherwise leave those whose flags were fine waiting in MPI_Init.
    const std::optional<int> stop = cli.parse(argc, argv);
    if (stop && detail::launcher_size() <= 1) return *stop;

    // A program without MPI that a launcher started several times would train the same model in
    // every copy, each alone, and write the same files: refuse rather than waste the job. Every
    // copy says so (it has no MPI to learn which one speaks), and a launcher's variables left in
    // the environment of a lone process are named as the other possible cause.
    if constexpr (std::is_same_v<Env, pardl::NoEnvironment>) {
        if (const int copies = detail::launcher_size(); copies > 1) {
            std::fflush(stdout);
            std::fprintf(stderr,
                         "[rank %d] error: this program does not use MPI (policy %s), yet it was started as "
                         "one of %d ranks (mpiexec, or PMI_SIZE, OMPI_COMM_WORLD_SIZE or PMIX_SIZE left in "
                         "the environment): each copy would train the same model alone and write the same "
                         "files. Run it without mpiexec, or run this example's _mpi or _hybrid program to "
                         "train across ranks\n",
                         launch_rank, Policy::name().c_str(), copies);
            return 2;
        }
    }

    std::optional<Env> env;
    int code = 0;
    std::string message;
    try {
        env.emplace(argc, argv);
        // 0: flags fine; 1: --help (exit 0); 2: bad flags (exit 2). parse() printed its message
        // where the launcher called this process rank 0. Another rank prints its own when rank 0
        // printed nothing or something milder (its flags fine, or --help), so that a --help or a
        // typo given to one rank of an MPMD line, or a lone process whose environment holds a
        // stale PMI_RANK, is never answered by silence.
        const int mine = stop ? (*stop == 0 ? 1 : 2) : 0;
        const int worst = Env::max_over_ranks(mine);
        if (worst != 0) {
            const bool printed = mine != 0 && detail::speaks_for_job();
            const bool rank0 = Env::world_rank() == 0;
            const int rank0_mine = Env::max_over_ranks(rank0 ? mine : 0);
            const int rank0_printed = Env::max_over_ranks(rank0 && printed ? 1 : 0);
            if (mine != 0 && !printed && (rank0_printed == 0 || mine > rank0_mine))
                std::fprintf(mine == 2 ? stderr : stdout, "[rank %d] %s", Env::world_rank(),
                             cli.parse_error().c_str());
            return worst == 2 ? 2 : 0;
        }
        const std::string differ = detail::flags_differing_between_ranks<Env>(cli.rank_shared_flags());
        if (!differ.empty())
            throw pardl::ConfigError("the ranks were given different flags: " + differ +
                                     "; only --data and --threads may differ between ranks");
        const int ranks = Env::world_size();
        if (Env::world_rank() == 0) {
            // The executor resolves 0 to its default and rejects impossible counts (ConfigError).
            const std::size_t workers = typename Policy::executor(cli.options().threads).threads();
            const unsigned cores = detail::hardware_cores();
            if (static_cast<std::size_t>(ranks) * workers > cores)
                std::fprintf(stderr,
                             "warning: %d ranks x %zu thread%s oversubscribe the %u cores: timings will not "
                             "be meaningful\n",
                             ranks, workers, workers == 1 ? "" : "s", cores);
        }
        if constexpr (std::is_void_v<std::invoke_result_t<Fn&>>) {
            body();
            return 0;
        } else {
            return static_cast<int>(body());
        }
    } catch (const pardl::DataError& e) {
        code = 1;
        message = e.what();
    } catch (const pardl::ConfigError& e) {
        code = 2;
        message = e.what();
    } catch (const std::bad_alloc&) {
        code = 1;
        message = "out of memory (std::bad_alloc): the model's buffers, a worker's per thread, the batch "
                  "and the data set did not fit; fewer --threads, a smaller --batch or --limit need less";
    } catch (const std::exception& e) {
        code = 1;
        message = e.what();
    } catch (...) {
        code = 1;
        message = "unknown exception";
    }

    const bool mpi_up = env.has_value();
    const int ranks = mpi_up ? Env::world_size() : 1;
    const int rank = mpi_up ? Env::world_rank() : launch_rank;
    std::fflush(stdout);
    if (ranks > 1)
        std::fprintf(stderr, "[rank %d] error: %s\n", rank, message.c_str());
    else
        std::fprintf(stderr, "error: %s\n", message.c_str());
    std::fflush(stderr);
    if (ranks > 1) Env::abort(code); // the other ranks may sit in a collective: end them all
    return code;
}

/// What the run record holds besides the options and the per-epoch history.
struct RunInfo {
    std::string model;
    std::string policy;
    int ranks = 1;
    std::size_t threads = 1;          ///< OS threads per rank
    std::size_t workers_per_rank = 1; ///< equal to threads except for Serial with workers taken in turn
    std::size_t train_images = 0;
    std::size_t test_images = 0;
    double lr = 0;
    std::uint64_t checksum = 0;
    std::size_t flops_per_sample = 0; ///< of one training step, per image
};

/// Reads the model's FLOP count, the policy, ranks, threads and checksum from a trainer.
template <class TrainerT>
RunInfo run_info(const std::string& model, const TrainerT& trainer, double lr, std::size_t train_images,
                 std::size_t test_images) {
    RunInfo info;
    info.model = model;
    info.policy = TrainerT::policy_type::name();
    info.ranks = trainer.ranks();
    info.threads = trainer.threads();
    info.workers_per_rank = trainer.workers();
    info.train_images = train_images;
    info.test_images = test_images;
    info.lr = lr;
    info.checksum = trainer.checksum();
    info.flops_per_sample = TrainerT::model_type::training_flops_per_sample;
    return info;
}

/// Writes the --json run record (configuration, machine, per-epoch metrics and timings, phase
/// totals) to `path` atomically (FILE.tmp, then rename). Call it on rank 0 only.
void write_run_record(const std::filesystem::path& path, const RunOptions& o, const RunInfo& info,
                      const std::vector<pardl::EpochRecord>& history);

} // namespace pardl::examples
