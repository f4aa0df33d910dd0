// The compiled half of the examples' plumbing (see app.hpp): everything that needs CLI11 or
// nlohmann-json, built once into pardl_example_common.
#include "common/app.hpp"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <limits>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>

#include "pardl/core/atomic_file.hpp"
#include "pardl/data/files.hpp"
#include "pardl/metrics/timer.hpp"
#include "pardl/train/checkpoint.hpp"

namespace pardl::examples {

namespace detail {

unsigned hardware_cores() {
    const unsigned c = std::thread::hardware_concurrency();
    return c ? c : 1;
}

} // namespace detail

namespace {

// CLI11's stock PositiveNumber / Range print DBL_MAX in their messages; these say what they mean.
std::optional<long double> parse_number(const std::string& s) {
    // Decimal only: strtold also reads hexadecimal ("0x10" is 16), which no one means here.
    if (s.empty() || s.find_first_of("xX") != std::string::npos) return std::nullopt;
    errno = 0;
    char* end = nullptr;
    const long double v = std::strtold(s.c_str(), &end);
    if (errno != 0 || end != s.c_str() + s.size() || !std::isfinite(v)) return std::nullopt;
    return v;
}

/// The whole of `s` as a decimal T (an integer type, or double), or nothing: empty, other
/// characters, or past T's range.
template <class T>
std::optional<T> parse_decimal(const std::string& s) {
    T v{};
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return v;
}

/// `text` cut at every `separator` ("a:b:" gives "a", "b" and "").
std::vector<std::string> split(const std::string& text, char separator) {
    std::vector<std::string> parts;
    for (std::size_t start = 0;;) {
        const std::size_t at = text.find(separator, start);
        parts.push_back(text.substr(start, at - start));
        if (at == std::string::npos) return parts;
        start = at + 1;
    }
}

/// Whether `s` is a decimal integer past what a long long holds ("99999999999999999999").
bool integer_too_large(const std::string& s) {
    long long v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc::result_out_of_range;
}

/// Any seed: an integer from 0 to 2^64 - 1, what the trainer takes, in decimal (a transform, as
/// integer_at_least).
CLI::Validator seed_value() {
    return CLI::Validator(
        [](std::string& s) -> std::string {
            const auto v = parse_decimal<std::uint64_t>(s);
            if (!v)
                return "must be an integer from 0 to " +
                       std::to_string(std::numeric_limits<std::uint64_t>::max()) + " (got '" + s + "')";
            s = std::to_string(*v); // CLI11 reads a leading 0 as octal ("010" as 8): hand it decimal
            return {};
        },
        "");
}

/// An integer >= lo (and <= hi), in decimal; a transform (->transform), since it hands CLI11 the
/// number without leading zeros.
CLI::Validator integer_at_least(long long lo, long long hi = std::numeric_limits<long long>::max()) {
    return CLI::Validator(
        [lo, hi](std::string& s) -> std::string {
            const auto v = parse_decimal<long long>(s);
            if (!v && !s.empty() && s[0] != '-' && integer_too_large(s))
                return "must be at most " + std::to_string(hi) + " (got '" + s + "')";
            if (!v || *v < lo || *v > hi)
                return "must be an integer >= " + std::to_string(lo) +
                       (hi < std::numeric_limits<long long>::max() ? " and <= " + std::to_string(hi) : "") +
                       " (got '" + s + "')";
            s = std::to_string(*v); // CLI11 reads a leading 0 as octal ("0300" as 192): hand it decimal
            return {};
        },
        "");
}

/// A finite real number for which `ok` holds; otherwise "must be <what>".
template <class Ok>
CLI::Validator real_number(Ok ok, std::string what) {
    return CLI::Validator(
        [ok, what](std::string& s) -> std::string {
            const auto v = parse_number(s);
            if (!v || !ok(*v)) return "must be " + what + " (got '" + s + "')";
            return {};
        },
        "");
}

/// A real number > 0 in the range of the float the library takes (normal floats: 1e-50 would
/// become 0 and 1e39 infinity), or 0 too where `zero` says what 0 means.
CLI::Validator positive_float(const char* zero = nullptr) {
    constexpr long double lowest = std::numeric_limits<float>::min(),
                          highest = std::numeric_limits<float>::max();
    char what[128];
    if (zero)
        std::snprintf(what, sizeof what, "0 (%s) or a number in the range of a float, %g to %g", zero,
                      static_cast<double>(lowest), static_cast<double>(highest));
    else
        std::snprintf(what, sizeof what, "a number > 0 in the range of a float, %g to %g",
                      static_cast<double>(lowest), static_cast<double>(highest));
    return real_number([=](long double v) { return (zero && v == 0) || (v >= lowest && v <= highest); },
                       what);
}

/// A path that is not empty (`--save ''` would otherwise mean no checkpoint, silently).
CLI::Validator non_empty() {
    return CLI::Validator(
        [](std::string& s) { return s.empty() ? std::string("must not be empty") : std::string(); }, "");
}

/// A real number in [0, 1), also as the float the library takes (0.999999999999 rounds to 1).
CLI::Validator unit_interval_half_open() {
    return real_number([](long double v) { return v >= 0 && static_cast<float>(v) < 1.0f; },
                       "a number in [0, 1), also once rounded to a float");
}

std::string hex64(std::uint64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

std::string iso_utc_now() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string host_name() {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
    return buf;
}

std::string compiler_id() {
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}

/// A value parse_lr_schedule accepts.
CLI::Validator lr_schedule_spec() {
    return CLI::Validator(
        [](std::string& s) -> std::string {
            try {
                parse_lr_schedule(s);
            } catch (const pardl::ConfigError& e) {
                return e.what();
            }
            return {};
        },
        "");
}

/// Registers the common flags on `app`, bound to `o`.
void add_run_flags(CLI::App& app, RunOptions& o) {
    app.add_option("--data", o.data, "Directory holding the Fashion-MNIST IDX files")
        ->type_name("DIR")
        ->capture_default_str();
    CLI::Option* epochs = app.add_option("--epochs", o.epochs, "Training epochs (>= 1)")
                              ->type_name("N")
                              ->transform(integer_at_least(1))
                              ->capture_default_str();
    app.add_option("--total-epochs", o.total_epochs,
                   "Train until N epochs in all, counting those a resumed checkpoint holds (instead of "
                   "--epochs more): the same command line then finishes a run however often it was "
                   "stopped and resubmitted")
        ->type_name("N")
        ->transform(integer_at_least(1))
        ->excludes(epochs);
    app.add_option("--batch", o.batch, "Global batch size, shared by all ranks and threads (>= 1)")
        ->type_name("B")
        ->transform(integer_at_least(1))
        ->capture_default_str();
    app.add_option("--lr", o.lr, "Learning rate, > 0 (default 0.01 for sgd, 0.001 for adam)")
        ->type_name("X")
        ->check(positive_float());
    app.add_option(
           "--lr-schedule", o.lr_schedule,
           "How the learning rate moves from the base rate (--lr, else the optimizer's default), set at "
           "every step: constant, step:EVERY[:GAMMA] (x GAMMA after every EVERY epochs), "
           "multistep:E1,E2,...[:GAMMA] (x GAMMA after epoch E1, again after E2, ...), "
           "cosine:EPOCHS[:MIN_LR] (down to MIN_LR over EPOCHS epochs, then held there). GAMMA "
           "defaults to 0.1, MIN_LR to 0")
        ->type_name("SPEC")
        ->check(lr_schedule_spec())
        ->capture_default_str();
    app.add_option("--warmup-epochs", o.warmup_epochs,
                   "Linear warm-up of the learning rate over N epochs up to the base rate (0 = none); "
                   "--lr-schedule's epochs count from the warm-up's end")
        ->type_name("N")
        ->transform(integer_at_least(0, max_schedule_epochs))
        ->capture_default_str();
    app.add_option("--clip-grad-norm", o.clip_grad_norm,
                   "Clip the gradient by its global norm before each update, as PyTorch's clip_grad_norm_: "
                   "where the L2 norm of a batch's mean gradient (all parameters) exceeds MAX, the update "
                   "uses it scaled down to MAX (0, the default: no clipping). The epoch log counts the "
                   "clipped steps. Every rank then sums the whole gradient and updates every parameter, "
                   "which costs some speed")
        ->type_name("MAX")
        ->check(positive_float("no clipping"))
        ->capture_default_str();
    app.add_option("--clip-grad-value", o.clip_grad_value,
                   "Clip the gradient by value before each update, as PyTorch's clip_grad_value_: every "
                   "element of a batch's mean gradient is clamped to [-MAX, MAX] (0, the default: no "
                   "clipping). Done inside the optimizer's update")
        ->type_name("MAX")
        ->check(positive_float("no clipping"))
        ->capture_default_str();
    app.add_option("--momentum", o.momentum, "SGD momentum, in [0, 1)")
        ->type_name("X")
        ->check(unit_interval_half_open())
        ->capture_default_str();
    app.add_option("--optimizer", o.optimizer, "Optimizer: sgd or adam")
        ->type_name("NAME")
        ->transform(CLI::IsMember({"sgd", "adam"}, CLI::ignore_case))
        ->capture_default_str();
    app.add_option("--weight-decay", o.weight_decay,
                   "L2 penalty: WD x the parameter is added to each gradient before the update, as "
                   "torch.optim.SGD's and Adam's weight_decay (0, the default: none)")
        ->type_name("WD")
        ->check(positive_float("none"))
        ->capture_default_str();
    app.add_flag("--nesterov", o.nesterov, "Nesterov momentum for SGD (needs --momentum > 0)");
    // Checks across flags, once all are parsed (CLI11 keeps one final callback per app). Both
    // clipping bounds set is refused, 0 being "off" (--clip-grad-norm 0 goes with either);
    // Nesterov momentum is SGD's, and needs momentum: refused where it would change nothing.
    app.final_callback([&o] {
        if (o.clip_grad_norm > 0 && o.clip_grad_value > 0)
            throw CLI::ValidationError("--clip-grad-value",
                                       "clip by norm or by value, not both (--clip-grad-norm is set too)");
        if (o.nesterov && o.optimizer != "sgd")
            throw CLI::ValidationError("--nesterov",
                                       "Nesterov momentum is SGD's (--optimizer is " + o.optimizer + ")");
        if (o.nesterov && o.momentum == 0)
            throw CLI::ValidationError("--nesterov", "Nesterov momentum needs --momentum > 0");
    });
    app.add_option("--seed", o.seed, "Seed of initialisation and shuffling")
        ->type_name("S")
        ->transform(seed_value())
        ->capture_default_str();
    app.add_option("--limit", o.limit, "Use only the first N training images (0 = all)")
        ->type_name("N")
        ->transform(integer_at_least(0))
        ->capture_default_str();
    app.add_option("--test-limit", o.test_limit, "Evaluate on the first N test images only (0 = all)")
        ->type_name("N")
        ->transform(integer_at_least(0))
        ->capture_default_str();
    app.add_option("--threads", o.threads,
                   "Workers per rank (0 = default): threads for OpenMP, Hybrid and TensorParallel "
                   "(default OMP_NUM_THREADS, else the core count); for Serial, T workers taken in turn on "
                   "one thread (default 1), "
                   "which reproduces a T-worker run's arithmetic bit for bit")
        ->type_name("T")
        ->transform(integer_at_least(0))
        ->capture_default_str();
    CLI::Option* save = app.add_option("--save", o.save,
                                       "Save a checkpoint to FILE: the parameters, and the optimizer's state "
                                       "and the epoch count, which --resume continues from")
                            ->type_name("FILE")
                            ->check(non_empty());
    app.add_option("--save-every", o.save_every,
                   "Also save the --save checkpoint after every N epochs, each write atomic (the old file "
                   "stays whole until the new one is complete): a run stopped by a crash or a time limit "
                   "loses at most N epochs, and --resume goes on from the last one saved")
        ->type_name("N")
        ->transform(integer_at_least(1))
        ->needs(save);
    CLI::Option* resume =
        app.add_option(
               "--resume", o.resume,
               "Continue a run from a checkpoint that --save wrote: --epochs more epochs, at its "
               "learning rate unless --lr or a schedule is given (a schedule goes on from the "
               "checkpoint's step). With the flags of the run that saved it (seed, "
               "batch, optimizer, momentum, lr flags, policy, ranks and workers, data flags) the result "
               "is that of "
               "one longer run, bit for bit; a note names the settings that differ (of the data, the "
               "image count, a hash of the labels and a CRC-32 of the pixels are recorded)")
            ->type_name("FILE")
            ->check(non_empty()); // only rank 0 reads it: require_resume_file checks it there
    app.add_flag("--auto-resume", o.auto_resume,
                 "Resume from the --save checkpoint if it exists, else start afresh: for a job that a "
                 "batch system may stop and resubmit with the same command line (with --save-every and "
                 "--total-epochs)")
        ->needs(save)
        ->excludes(resume);
    app.add_option("--json", o.json, "Write the run record (timings, metrics, checksum) to FILE")
        ->type_name("FILE")
        ->check(non_empty());
    app.add_option("--timeline", o.timeline,
                   "Write a Chrome trace (chrome://tracing, Perfetto) of every step's phases to FILE")
        ->type_name("FILE")
        ->check(non_empty());
    app.add_option("--check-replicas", o.check_replicas,
                   "Compare parameter checksums across ranks every K steps (0 = never)")
        ->type_name("K")
        ->transform(integer_at_least(0))
        ->capture_default_str();
    app.add_flag("--quiet", o.quiet, "No model table and no live progress line");
    app.add_flag("--keep-subnormals", o.keep_subnormals,
                 "Compute with IEEE subnormal floats instead of flushing them to zero (PyTorch's default; "
                 "slower in long runs)");
    // Test hook, hidden from --help: lets the test suite check that one failing rank ends the job.
    app.add_option("--fail-on-rank", o.fail_on_rank, "")->group("");
    // Test hook, hidden: every rank (or the --fail-on-rank one) stops with an error after this epoch
    // (and --save-every's save of it), as a run killed there would; the tests resume from the
    // checkpoint, or check that one rank's failure ends the job.
    app.add_option("--fail-after-epoch", o.fail_after_epoch, "")->group("")->transform(integer_at_least(1));
}

/// The run record as JSON.
nlohmann::json make_run_record(const RunOptions& o, const RunInfo& info,
                               const std::vector<pardl::EpochRecord>& history) {
    using nlohmann::json;
    json epoch_seconds = json::array(), train_loss = json::array(), train_acc = json::array(),
         test_loss = json::array(), test_acc = json::array(), learning_rate = json::array(),
         clipped_steps = json::array();
    std::vector<double> phase_sum(pardl::phase_names.size(), 0.0);
    double train_seconds = 0;
    std::size_t samples = 0;
    for (const pardl::EpochRecord& r : history) {
        epoch_seconds.push_back(r.seconds);
        train_loss.push_back(r.train_loss);
        train_acc.push_back(r.train_accuracy);
        test_loss.push_back(r.test_loss);
        test_acc.push_back(r.test_accuracy);
        learning_rate.push_back(r.learning_rate);
        clipped_steps.push_back(r.clipped_steps);
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
    rec["param_checksum"] = hex64(info.checksum);
    rec["phases"] = std::move(phases);
    rec["phases_note"] = "seconds summed over epochs, measured on rank 0's first worker";
    rec["seed"] = o.seed;
    rec["flush_subnormals"] = !o.keep_subnormals;
    rec["lr"] = info.lr;
    rec["lr_schedule"] = o.lr_schedule;
    rec["warmup_epochs"] = o.warmup_epochs;
    rec["clip_grad_norm"] = o.clip_grad_norm;   // 0: no clipping
    rec["clip_grad_value"] = o.clip_grad_value; // 0: no clipping
    rec["clipped_steps"] = std::move(clipped_steps);
    rec["learning_rate"] = std::move(learning_rate);
    rec["learning_rate_note"] = "the rate of each epoch's last step";
    rec["momentum"] = o.optimizer == "sgd" ? o.momentum : 0.0;
    rec["nesterov"] = o.nesterov;
    rec["weight_decay"] = o.weight_decay;
    rec["optimizer"] = o.optimizer;
    rec["limit"] = o.limit;
    rec["test_limit"] = o.test_limit;
    rec["hostname"] = host_name();
    rec["cores"] = detail::hardware_cores();
    rec["compiler"] = compiler_id();
    rec["date"] = iso_utc_now();
    rec["flops_per_sample"] = info.flops_per_sample;
    if (!o.timeline.empty()) rec["timeline"] = o.timeline;
    return rec;
}

} // namespace

LrScheduleSpec parse_lr_schedule(const std::string& spec) {
    const auto fail = [&](const std::string& why) -> LrScheduleSpec {
        throw pardl::ConfigError("'" + spec + "': " + why +
                                 " (constant, step:EVERY[:GAMMA], multistep:E1,E2,...[:GAMMA] or "
                                 "cosine:EPOCHS[:MIN_LR])");
    };
    const std::vector<std::string> fields = split(spec, ':');
    const auto epochs = [&](const std::string& text) {
        const auto v = parse_decimal<long long>(text);
        if (!v || *v < 1 || static_cast<unsigned long long>(*v) > max_schedule_epochs)
            fail("'" + text + "' is not a number of epochs from 1 to " + std::to_string(max_schedule_epochs));
        return static_cast<std::size_t>(*v);
    };
    const auto real = [&](const std::string& text, const char* must, auto ok) {
        const auto v = parse_number(text);
        if (!v || !ok(*v)) fail(std::string(must) + " (got '" + text + "')");
        return static_cast<double>(*v);
    };
    const auto gamma = [&](const std::string& text) {
        // As a float, as the optimizer takes it: 1e-50 would be 0.
        return real(text, "GAMMA must be in (0, 1]",
                    [](long double v) { return static_cast<float>(v) > 0 && v <= 1; });
    };
    LrScheduleSpec s;
    const std::string& kind = fields[0];
    if (kind == "constant") {
        if (fields.size() != 1) fail("constant takes no values");
        return s;
    }
    if (kind == "step" || kind == "multistep") {
        if (fields.size() < 2 || fields.size() > 3) fail(kind + " takes the epochs and an optional GAMMA");
        s.kind = kind == "step" ? LrScheduleSpec::Kind::step : LrScheduleSpec::Kind::multistep;
        if (s.kind == LrScheduleSpec::Kind::step) {
            s.epochs = {epochs(fields[1])};
        } else {
            for (const std::string& milestone : split(fields[1], ',')) {
                s.epochs.push_back(epochs(milestone));
                if (s.epochs.size() > 1 && s.epochs.back() <= s.epochs[s.epochs.size() - 2])
                    fail("the milestones must be strictly increasing");
            }
        }
        if (fields.size() == 3) s.gamma = gamma(fields[2]);
        return s;
    }
    if (kind == "cosine") {
        if (fields.size() < 2 || fields.size() > 3) fail("cosine takes EPOCHS and an optional MIN_LR");
        s.kind = LrScheduleSpec::Kind::cosine;
        s.epochs = {epochs(fields[1])};
        if (fields.size() == 3)
            // As a float, as the schedule takes it, and bounded as --lr is: a positive MIN_LR
            // that rounds to 0 would be 0.
            s.min_lr =
                real(fields[2], "MIN_LR must be 0 or a float from 1.17549e-38 (the smallest normal float)",
                     [](long double v) {
                         const auto f = static_cast<float>(v);
                         return v == 0 || (std::isfinite(f) && f >= std::numeric_limits<float>::min());
                     });
        return s;
    }
    return fail("unknown schedule '" + kind + "'");
}

std::string data_fingerprint(const Dataset& data) {
    pardl::detail::Fnv1a labels;
    labels.add(data.labels.data(), data.labels.size() * sizeof(data.labels[0]));
    pardl::detail::Crc pixels; // the checkpoints' CRC-32 (zlib)
    pixels.add(data.features.data(), data.features.size() * sizeof(float));
    char crc[9];
    std::snprintf(crc, sizeof crc, "%08x", static_cast<unsigned>(pixels.value()));
    return std::to_string(data.rows) + " images, labels hash " + hex64(labels.value) + ", pixels crc32 " +
           crc;
}

Schedule make_lr_schedule(const LrScheduleSpec& spec, std::size_t warmup_epochs, float lr,
                          std::uint64_t steps_per_epoch) {
    using Kind = LrScheduleSpec::Kind;
    if (spec.kind == Kind::constant && warmup_epochs == 0) return {};
    std::vector<std::uint64_t> steps;
    for (std::size_t e : spec.epochs) steps.push_back(e * steps_per_epoch);
    Schedule s;
    switch (spec.kind) {
    case Kind::constant:
        s = schedule::constant(lr);
        break;
    case Kind::step:
        s = schedule::step_decay(lr, steps[0], static_cast<float>(spec.gamma));
        break;
    case Kind::multistep:
        s = schedule::multi_step(lr, std::move(steps), static_cast<float>(spec.gamma));
        break;
    case Kind::cosine: {
        // The cosine checks min_lr <= lr; say which flag it came from.
        if (!(static_cast<float>(spec.min_lr) <= lr)) { // both as the schedule takes them
            char why[160];
            std::snprintf(why, sizeof why, "--lr-schedule cosine: MIN_LR %g is above the base rate %g",
                          spec.min_lr, static_cast<double>(lr));
            throw pardl::ConfigError(why);
        }
        s = schedule::cosine(lr, steps[0], static_cast<float>(spec.min_lr));
        break;
    }
    }
    if (warmup_epochs > 0) s = schedule::warmup(warmup_epochs * steps_per_epoch, std::move(s));
    return s;
}

CommandLine::CommandLine(const std::string& description, RunOptions& options)
    : options_(options), app_(std::make_unique<CLI::App>(description)) {
    add_run_flags(*app_, options_);
}

CommandLine::~CommandLine() = default;

void require_writable_outputs(const RunOptions& o) {
    namespace fs = std::filesystem;
    std::vector<std::pair<fs::path, std::string>> outputs; // checked so far, and the flag naming each
    const auto check = [&](const std::string& p, const std::string& flag) {
        if (p.empty()) return;
        const auto fail = [&](const std::string& why) {
            throw pardl::ConfigError(flag + " " + p + ": " + why);
        };
        // Empty, a link, a folder, a device (/dev/stdout) or a FIFO: the atomic write would replace it.
        if (const std::string problem = pardl::atomic_write_problem(p); !problem.empty()) fail(problem);
        const fs::path file = p;
        const fs::path dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
        std::error_code ec;
        if (!fs::is_directory(dir, ec)) fail("the folder " + dir.string() + " does not exist");
        if (::access(dir.c_str(), W_OK) != 0)
            fail("cannot write in " + dir.string() + ": " + std::strerror(errno));
        // Two outputs in one file would leave only the last one written; the checkpoint a run
        // resumes from, or a data file, would be lost (--save over --resume is a resumed run's
        // own checkpoint, and fine).
        using pardl::detail::same_file;
        for (const auto& [other, other_flag] : outputs)
            if (same_file(file, other)) fail("is the file " + other_flag + " names too");
        if (flag != "--save" && !o.resume.empty() && same_file(file, o.resume))
            fail("is the checkpoint --resume reads");
        for (const bool train : {true, false})
            for (const bool images : {true, false})
                for (const char* ext : {"", ".gz"})
                    if (same_file(file, o.data / (pardl::detail::fashion_mnist_name(train, images) + ext)))
                        fail("is a data file that --data reads");
        outputs.emplace_back(file, flag);
    };
    check(o.save, "--save");
    check(o.json, "--json");
    check(o.timeline, "--timeline");
}

void require_resume_file(const RunOptions& o) {
    if (o.resume.empty()) return;
    try {
        pardl::detail::require_regular_file(o.resume, "--resume");
    } catch (const pardl::DataError& e) {
        throw pardl::ConfigError(e.what()); // a flag that names no checkpoint: exit 2, as a bad flag
    }
}

void CommandLine::add_flag(const std::string& name, bool& value, const std::string& help) {
    app_->add_flag(name, value, help);
}

std::optional<int> CommandLine::parse(int argc, char** argv) {
    try {
        app_->parse(argc, argv);
        return std::nullopt;
    } catch (const CLI::ParseError& e) {
        std::ostringstream sink;
        // Under a launcher only its rank 0 prints; a process alone always does.
        const bool talk = pardl::detail::speaks_for_job();
        const int code = app_->exit(e, talk ? std::cout : sink, talk ? std::cerr : sink);
        parse_error_ = sink.str();
        return code == 0 ? 0 : 2;
    }
}

bool CommandLine::given(const std::string& name) const {
    return app_->count(name) > 0;
}

namespace {
/// A number as its value, so that ranks given "07" and "7", or "0.1" and "1e-1", agree: an
/// integer in decimal (exact to 64 bits, as --seed needs), else a double's shortest form; any
/// other text unchanged.
std::string as_value(const std::string& text) {
    // The whole text, in range: a number past a type's range is left as the text it is.
    if (const auto u = parse_decimal<std::uint64_t>(text)) return std::to_string(*u);
    if (const auto i = parse_decimal<std::int64_t>(text)) return std::to_string(*i);
    if (const auto d = parse_decimal<double>(text); d && std::isfinite(*d)) {
        char buf[32];
        const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, *d);
        if (ec == std::errc()) return std::string(buf, end);
    }
    return text;
}
} // namespace

std::vector<std::pair<std::string, std::string>> CommandLine::rank_shared_flags() const {
    std::vector<std::pair<std::string, std::string>> flags;
    for (const CLI::Option* opt : app_->get_options()) {
        if (opt->check_name("--help") || opt->check_name("--data") || opt->check_name("--threads")) continue;
        const bool names_a_file = opt->get_type_name().rfind("FILE", 0) == 0; // "07" and "7" are two files
        std::string value;
        if (opt->count() > 0)
            for (const std::string& r : opt->results())
                value += (value.empty() ? "" : " ") + (names_a_file ? r : as_value(r));
        else
            value = names_a_file ? opt->get_default_str() : as_value(opt->get_default_str());
        flags.emplace_back(opt->get_name(), value);
    }
    return flags;
}

void write_run_record(const std::filesystem::path& path, const RunOptions& o, const RunInfo& info,
                      const std::vector<pardl::EpochRecord>& history) {
    const std::string text = make_run_record(o, info, history).dump(2) + "\n";
    pardl::write_file_atomically<std::runtime_error>(path, "run record",
                                                     [&](const auto& put) { put(text.data(), text.size()); });
}

} // namespace pardl::examples
