// Shared plumbing of pardl's example programs (not part of the library): the common run flags,
// run_example() which parses them before MPI starts and turns every failure on any rank into a
// clear message and a prompt exit of the whole job, and the --json run record.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "pardl/core/errors.hpp"
#include "pardl/data/idx.hpp"
#include "pardl/metrics/timer.hpp"
#include "pardl/train/trainer.hpp"

namespace pardl::examples {

/// The flags every example understands.
struct RunOptions {
    std::filesystem::path data = pardl::default_fashion_mnist_dir;
    std::size_t epochs = 5, batch = 64, limit = 0, test_limit = 0, threads = 0, check_replicas = 0;
    double lr = 0.01, momentum = 0.9;
    std::string optimizer = "sgd";
    std::uint64_t seed = 42;
    std::string save, json;
    std::string timeline; ///< Chrome trace of every step's phases (all ranks in one file)
    bool quiet = false;
    int fail_on_rank = -1; ///< test hook: this rank throws DataError("injected failure") after loading
};

namespace detail {

// CLI11's stock PositiveNumber / Range print DBL_MAX in their messages; these say what they mean.
inline std::optional<long double> parse_number(const std::string& s) {
    if (s.empty()) return std::nullopt;
    errno = 0;
    char* end = nullptr;
    const long double v = std::strtold(s.c_str(), &end);
    if (errno != 0 || end != s.c_str() + s.size() || !std::isfinite(v)) return std::nullopt;
    return v;
}

/// An integer >= lo.
inline CLI::Validator integer_at_least(long long lo) {
    return CLI::Validator(
        [lo](std::string& s) -> std::string {
            long long v = 0;
            const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
            if (ec != std::errc{} || p != s.data() + s.size() || v < lo)
                return "must be an integer >= " + std::to_string(lo) + " (got '" + s + "')";
            return {};
        },
        "");
}

/// A finite real number > 0.
inline CLI::Validator positive_real() {
    return CLI::Validator(
        [](std::string& s) -> std::string {
            const auto v = parse_number(s);
            if (!v || *v <= 0) return "must be a number > 0 (got '" + s + "')";
            return {};
        },
        "");
}

/// A real number in [0, 1).
inline CLI::Validator unit_interval_half_open() {
    return CLI::Validator(
        [](std::string& s) -> std::string {
            const auto v = parse_number(s);
            if (!v || *v < 0 || *v >= 1) return "must be a number in [0, 1) (got '" + s + "')";
            return {};
        },
        "");
}

/// The rank mpiexec gave this process, read before MPI is initialised (MPICH's hydra and most
/// PMI launchers set PMI_RANK, Open MPI sets OMPI_COMM_WORLD_RANK); 0 when not launched by one.
inline int launcher_rank() {
    for (const char* name : {"PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"}) {
        if (const char* v = std::getenv(name)) {
            int r = 0;
            const auto [p, ec] = std::from_chars(v, v + std::char_traits<char>::length(v), r);
            if (ec == std::errc{}) return r;
        }
    }
    return 0;
}

inline std::string hex64(std::uint64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

inline std::string iso_utc_now() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

inline std::string host_name() {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
    return buf;
}

inline std::string compiler_id() {
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}

inline unsigned hardware_cores() {
    const unsigned c = std::thread::hardware_concurrency();
    return c ? c : 1;
}

} // namespace detail

/// Registers the common flags on `app`, bound to `o`.
inline void add_run_flags(CLI::App& app, RunOptions& o) {
    app.add_option("--data", o.data, "Directory holding the Fashion-MNIST IDX files")
        ->type_name("DIR")
        ->capture_default_str();
    app.add_option("--epochs", o.epochs, "Training epochs (>= 1)")
        ->type_name("N")
        ->check(detail::integer_at_least(1))
        ->capture_default_str();
    app.add_option("--batch", o.batch, "Global batch size, shared by all ranks and threads (>= 1)")
        ->type_name("B")
        ->check(detail::integer_at_least(1))
        ->capture_default_str();
    app.add_option("--lr", o.lr, "Learning rate, > 0 (default 0.01 for sgd, 0.001 for adam)")
        ->type_name("X")
        ->check(detail::positive_real());
    app.add_option("--momentum", o.momentum, "SGD momentum, in [0, 1)")
        ->type_name("X")
        ->check(detail::unit_interval_half_open())
        ->capture_default_str();
    app.add_option("--optimizer", o.optimizer, "Optimizer: sgd or adam")
        ->type_name("NAME")
        ->transform(CLI::IsMember({"sgd", "adam"}, CLI::ignore_case))
        ->capture_default_str();
    app.add_option("--seed", o.seed, "Seed of initialisation and shuffling")
        ->type_name("S")
        ->check(detail::integer_at_least(0))
        ->capture_default_str();
    app.add_option("--limit", o.limit, "Use only the first N training images (0 = all)")
        ->type_name("N")
        ->check(detail::integer_at_least(0))
        ->capture_default_str();
    app.add_option("--test-limit", o.test_limit, "Evaluate on the first N test images only (0 = all)")
        ->type_name("N")
        ->check(detail::integer_at_least(0))
        ->capture_default_str();
    app.add_option("--threads", o.threads,
                   "Workers per rank (0 = default): threads for OpenMP and Hybrid (default OMP_NUM_THREADS, "
                   "else the core count); for Serial, T workers taken in turn on one thread (default 1), "
                   "which reproduces a T-worker run's arithmetic bit for bit")
        ->type_name("T")
        ->check(detail::integer_at_least(0))
        ->capture_default_str();
    app.add_option("--save", o.save, "Save a checkpoint of the trained parameters to FILE")
        ->type_name("FILE");
    app.add_option("--json", o.json, "Write the run record (timings, metrics, checksum) to FILE")
        ->type_name("FILE");
    app.add_option("--timeline", o.timeline,
                   "Write a Chrome trace (chrome://tracing, Perfetto) of every step's phases to FILE")
        ->type_name("FILE");
    app.add_option("--check-replicas", o.check_replicas,
                   "Compare parameter checksums across ranks every K steps (0 = never)")
        ->type_name("K")
        ->check(detail::integer_at_least(0))
        ->capture_default_str();
    app.add_flag("--quiet", o.quiet, "No model table and no live progress line");
    // Test hook, hidden from --help: lets the test suite check that one failing rank ends the job.
    app.add_option("--fail-on-rank", o.fail_on_rank, "")->group("");
}

/// The learning rate actually used: --lr if given, else the optimizer's customary default.
inline double effective_lr(const CLI::App& app, const RunOptions& o) {
    if (app.count("--lr") == 0 && o.optimizer == "adam") return 1e-3;
    return o.lr;
}

/// Throws the test hook's DataError on the chosen rank.
inline void maybe_inject_failure(const RunOptions& o, int rank) {
    if (o.fail_on_rank >= 0 && o.fail_on_rank == rank)
        throw pardl::DataError("injected failure on rank " + std::to_string(rank) + " (--fail-on-rank)");
}

/// Parses the flags, starts the policy's process environment (MPI_Init for MPI policies), runs
/// `body` and maps failures to exit codes: 0 success (and --help), 2 bad flags or ConfigError,
/// 1 DataError and anything else. With several ranks a failure on any rank ends every rank
/// (MPI_Abort), so a job never hangs on a collective that a dead rank will not join.
template <class Policy, class Fn>
int run_example(int argc, char** argv, CLI::App& app, Fn&& body) {
    using Env = typename Policy::communicator::Environment;
    const int launch_rank = detail::launcher_rank();

    // Flags first, before MPI exists: a typo gives CLI11's message once (rank 0) and exit 2
    // on every rank, without MPI_Abort noise.
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        std::ostringstream sink;
        const bool talk = launch_rank == 0;
        const int code = app.exit(e, talk ? std::cout : sink, talk ? std::cerr : sink);
        return code == 0 ? 0 : 2;
    }

    std::optional<Env> env;
    int code = 0;
    std::string message;
    try {
        env.emplace(argc, argv);
        const int ranks = Env::world_size();
        if (Env::world_rank() == 0) {
            std::size_t threads = 0;
            if (const CLI::Option* opt = app.get_option_no_throw("--threads"); opt && opt->count())
                threads = opt->as<std::size_t>();
            // The executor resolves 0 to its default and rejects impossible counts (ConfigError).
            const std::size_t workers = typename Policy::executor(threads).threads();
            const unsigned cores = detail::hardware_cores();
            if (static_cast<std::size_t>(ranks) * workers > cores)
                std::fprintf(stderr,
                             "warning: %d ranks x %zu threads oversubscribe the %u cores: timings will not "
                             "be meaningful\n",
                             ranks, workers, cores);
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

/// What make_run_record needs besides the options and the per-epoch history.
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
};

/// The --json run record: configuration, machine, per-epoch metrics and timings, phase totals.
inline nlohmann::json make_run_record(const RunOptions& o, const RunInfo& info,
                                      const std::vector<pardl::EpochRecord>& history) {
    using nlohmann::json;
    json epoch_seconds = json::array(), train_loss = json::array(), train_acc = json::array(),
         test_loss = json::array(), test_acc = json::array();
    std::vector<double> phase_sum(pardl::phase_names.size(), 0.0);
    double train_seconds = 0;
    std::size_t samples = 0;
    for (const pardl::EpochRecord& r : history) {
        epoch_seconds.push_back(r.seconds);
        train_loss.push_back(r.train_loss);
        train_acc.push_back(r.train_accuracy);
        test_loss.push_back(r.test_loss);
        test_acc.push_back(r.test_accuracy);
        train_seconds += r.seconds;
        samples += info.train_images;
        for (std::size_t i = 0; i < phase_sum.size(); ++i) phase_sum[i] += r.phases.seconds[i];
    }
    json phases = json::object();
    for (std::size_t i = 0; i < phase_sum.size(); ++i)
        phases[std::string(pardl::phase_names[i])] = phase_sum[i];

    json rec;
    rec["model"] = info.model;
    rec["policy"] = info.policy;
    rec["ranks"] = info.ranks;
    rec["threads"] = info.threads;
    rec["workers"] = static_cast<std::size_t>(info.ranks) * info.threads;
    rec["workers_per_rank"] = info.workers_per_rank;
    rec["batch"] = o.batch;
    rec["epochs"] = history.size();
    rec["train_images"] = info.train_images;
    rec["test_images"] = info.test_images;
    rec["epoch_seconds"] = std::move(epoch_seconds);
    rec["train_seconds"] = train_seconds;
    rec["samples_per_second"] = train_seconds > 0 ? static_cast<double>(samples) / train_seconds : 0.0;
    rec["train_loss"] = std::move(train_loss);
    rec["train_accuracy"] = std::move(train_acc);
    rec["test_loss"] = std::move(test_loss);
    rec["test_accuracy"] = std::move(test_acc);
    rec["final_test_accuracy"] = history.empty() ? 0.0 : history.back().test_accuracy;
    rec["param_checksum"] = detail::hex64(info.checksum);
    rec["phases"] = std::move(phases);
    rec["phases_note"] = "seconds summed over epochs, measured on rank 0's first worker";
    rec["seed"] = o.seed;
    rec["lr"] = info.lr;
    rec["momentum"] = o.optimizer == "sgd" ? o.momentum : 0.0;
    rec["optimizer"] = o.optimizer;
    rec["limit"] = o.limit;
    rec["test_limit"] = o.test_limit;
    rec["hostname"] = detail::host_name();
    rec["cores"] = detail::hardware_cores();
    rec["compiler"] = detail::compiler_id();
    rec["date"] = detail::iso_utc_now();
    if (!o.timeline.empty()) rec["timeline"] = o.timeline;
    return rec;
}

/// Convenience overload that reads ranks, threads, policy and checksum from the trainer.
template <class TrainerT>
nlohmann::json make_run_record(const RunOptions& o, const std::string& model, const TrainerT& trainer,
                               double lr, std::size_t train_images, std::size_t test_images,
                               const std::vector<pardl::EpochRecord>& history) {
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
    return make_run_record(o, info, history);
}

/// Writes `record` to `path` atomically (FILE.tmp, then rename). Call it on rank 0 only.
inline void write_run_record(const std::filesystem::path& path, const nlohmann::json& record) {
    std::filesystem::path tmp = path;
    tmp += ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        if (!out) throw std::runtime_error("cannot write run record '" + tmp.string() + "'");
        out << record.dump(2) << '\n';
        out.flush();
        if (!out) throw std::runtime_error("error while writing run record '" + tmp.string() + "'");
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec)
        throw std::runtime_error("cannot rename '" + tmp.string() + "' to '" + path.string() +
                                 "': " + ec.message());
}

} // namespace pardl::examples
