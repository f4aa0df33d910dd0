// Checkpoint files: a versioned header (magic, format version, model signature, sizes, CRC-32)
// followed by the flat parameter and state buffers and, from version 2, the training progress
// (step and epoch counters, the optimizer's kind, learning rate, step count and per-parameter
// state) that resuming a run needs; from version 3 also the settings of the run that wrote it
// (batch, seed, policy, ranks, workers, the optimizer's options), which a resumed run compares
// with its own. Written atomically (temporary file in the same directory,
// fsync, rename), so a crash never leaves a half-written checkpoint behind.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "pardl/core/atomic_file.hpp"
#include "pardl/core/errors.hpp"
#include "pardl/data/files.hpp"

namespace pardl {

inline constexpr char checkpoint_magic[8] = {'P', 'A', 'R', 'D', 'L', 'C', 'K', 'P'};
inline constexpr std::uint32_t checkpoint_version = 3;

/// What a checkpoint holds besides the model: where training stood, so that a run resumed from it
/// continues exactly as the uninterrupted run would (Trainer::save / load). `optimizer` empty:
/// the optimizer's state was not saved (an optimizer that does not expose it, or a version-1
/// file, which holds the model alone).
struct TrainingProgress {
    std::uint64_t step = 0;   ///< training steps taken (Trainer::steps_done)
    std::uint64_t epochs = 0; ///< epochs trained (Trainer::epochs_trained)
    std::string optimizer{};  ///< the optimizer's name(), e.g. "sgd", "adam"
    float learning_rate = 0;
    std::uint64_t optimizer_steps = 0;
    std::vector<float> optimizer_state{}; ///< its per-parameter buffers, back to back
    /// The settings of the run that wrote it, as (name, value) text: what a resumed run must share
    /// with it to continue bit for bit (Trainer::load reports any that differ). Empty in a
    /// version-2 file. At most 64 pairs, names and values under 256 bytes each.
    std::vector<std::pair<std::string, std::string>> settings{};
    bool present = false; ///< load_checkpoint: the file had this section (version >= 2)
};

inline constexpr std::size_t checkpoint_max_settings = 64;

namespace detail {
/// Whether text is printable UTF-8: well-formed (no overlong form, surrogate or code point past
/// U+10FFFF) and without control characters (C0, DEL, C1). What a checkpoint's texts (model
/// signature, settings) must be: anything else is corruption, and is not printed.
inline bool is_printable_text(const std::string& text) {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const auto* const end = p + text.size();
    while (p < end) {
        const unsigned char lead = *p++;
        if (lead < 0x80) {
            if (lead < 0x20 || lead == 0x7F) return false;
            continue;
        }
        const int extra = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : -1;
        if (extra < 0 || lead > 0xF4 || end - p < extra) return false;
        std::uint32_t cp = lead & (0x3Fu >> extra);
        for (int i = 0; i < extra; ++i, ++p) {
            if ((*p & 0xC0) != 0x80) return false;
            cp = cp << 6 | (*p & 0x3Fu);
        }
        constexpr std::uint32_t smallest[] = {0, 0x80, 0x800, 0x10000};
        if (cp < smallest[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp <= 0x9F)
            return false;
    }
    return true;
}
} // namespace detail

/// What keeps `settings` out of a checkpoint, or "" if nothing does: more than
/// checkpoint_max_settings of them, a name or value of 256 bytes or more, not UTF-8 or with a
/// control character (a newline would split Trainer::load's report into lines of its own), or a name twice
/// (only the first would ever be compared). The one check of the writer, the reader and the
/// Trainer's constructor, each of which says it in its own error.
inline std::string
checkpoint_settings_problem(const std::vector<std::pair<std::string, std::string>>& settings) {
    if (settings.size() > checkpoint_max_settings)
        return std::to_string(settings.size()) + " settings (at most " +
               std::to_string(checkpoint_max_settings) + ")";
    const auto text_ok = [](const std::string& text) {
        return detail::is_printable_text(text) && text.size() < 256;
    };
    for (std::size_t i = 0; i < settings.size(); ++i) {
        const auto& [name, value] = settings[i];
        if (!text_ok(name) || !text_ok(value))
            // The name only where it is printable (its first 40 bytes may cut a character: then not).
            return "setting " +
                   (detail::is_printable_text(name.substr(0, 40)) ? name.substr(0, 40)
                                                                  : "number " + std::to_string(i + 1)) +
                   " is not at most 255 bytes of printable UTF-8 (a name or value is longer, is not UTF-8, "
                   "or holds a control character)";
        for (std::size_t j = 0; j < i; ++j)
            if (settings[j].first == name) return "two settings share a name (" + name.substr(0, 40) + ")";
    }
    return {};
}

namespace detail {
static_assert(std::endian::native == std::endian::little, "pardl checkpoints assume a little-endian host");

/// A running CRC-32 over the bytes of a checkpoint's payload.
class Crc {
public:
    void add(const void* data, std::size_t bytes) {
        const auto* p = static_cast<const Bytef*>(data);
        while (bytes > 0) { // crc32 takes uInt lengths
            const auto n = static_cast<uInt>(std::min<std::size_t>(bytes, 1u << 30));
            crc_ = crc32(crc_, p, n);
            p += n;
            bytes -= n;
        }
    }
    std::uint32_t value() const { return static_cast<std::uint32_t>(crc_); }

private:
    uLong crc_ = crc32(0L, Z_NULL, 0);
};

/// The training section as written before the optimizer's state (the checksum covers it), field
/// by field in the order load_checkpoint reads them.
inline std::vector<char> progress_bytes(const TrainingProgress& t) {
    std::vector<char> out;
    const auto put = [&](const void* p, std::size_t n) {
        const char* c = static_cast<const char*>(p);
        out.insert(out.end(), c, c + n);
    };
    const auto name_len = static_cast<std::uint32_t>(t.optimizer.size());
    const std::uint64_t n_state = t.optimizer_state.size();
    put(&t.step, sizeof t.step);
    put(&t.epochs, sizeof t.epochs);
    put(&name_len, sizeof name_len);
    put(t.optimizer.data(), t.optimizer.size());
    put(&t.learning_rate, sizeof t.learning_rate);
    put(&t.optimizer_steps, sizeof t.optimizer_steps);
    put(&n_state, sizeof n_state);
    return out;
}

/// The settings section (version 3), after the optimizer's state: a count (4 bytes), then per
/// setting its name and its value, each a length byte and the text.
inline std::vector<char> settings_bytes(const TrainingProgress& t) {
    std::vector<char> out;
    const auto count = static_cast<std::uint32_t>(t.settings.size());
    const char* c = reinterpret_cast<const char*>(&count);
    out.insert(out.end(), c, c + sizeof count);
    const auto text = [&](const std::string& s) {
        out.push_back(static_cast<char>(static_cast<unsigned char>(s.size())));
        out.insert(out.end(), s.begin(), s.end());
    };
    for (const auto& [name, value] : t.settings) {
        text(name);
        text(value);
    }
    return out;
}
} // namespace detail

/// Writes parameters and state for the model named `signature` to `path`, atomically: with a
/// training progress in format version 3, without one (the model alone) in version 1, which
/// Trainer::load then takes as the model alone too.
inline void save_checkpoint(const std::filesystem::path& path, const std::string& signature,
                            std::span<const float> params, std::span<const float> state,
                            const TrainingProgress* progress = nullptr) {
    PARDL_REQUIRE(progress == nullptr || progress->optimizer.size() < 256, CheckpointError,
                  "cannot write checkpoint ", path.string(), ": an optimizer name of ",
                  progress ? progress->optimizer.size() : 0, " bytes (at most 255)");
    if (progress != nullptr) {
        const std::string problem = checkpoint_settings_problem(progress->settings);
        PARDL_REQUIRE(problem.empty(), CheckpointError, "cannot write checkpoint ", path.string(), ": ",
                      problem);
    }
    const auto sig_len = static_cast<std::uint32_t>(signature.size());
    const std::uint64_t np = params.size(), ns = state.size();
    const std::uint32_t version = progress != nullptr ? checkpoint_version : 1;
    const std::vector<char> section =
        progress != nullptr ? detail::progress_bytes(*progress) : std::vector<char>{};
    const std::span<const float> opt_state =
        progress != nullptr ? std::span<const float>(progress->optimizer_state) : std::span<const float>{};
    const std::vector<char> settings =
        progress != nullptr ? detail::settings_bytes(*progress) : std::vector<char>{};
    detail::Crc sum;
    sum.add(params.data(), params.size_bytes());
    sum.add(state.data(), state.size_bytes());
    sum.add(section.data(), section.size());
    sum.add(opt_state.data(), opt_state.size_bytes());
    sum.add(settings.data(), settings.size());
    const std::uint32_t crc = sum.value();
    write_file_atomically<CheckpointError>(path, "checkpoint", [&](const auto& put) {
        put(checkpoint_magic, sizeof checkpoint_magic);
        put(&version, sizeof version);
        put(&sig_len, sizeof sig_len);
        put(signature.data(), signature.size());
        put(&np, sizeof np);
        put(&ns, sizeof ns);
        put(&crc, sizeof crc);
        put(params.data(), params.size_bytes());
        put(state.data(), state.size_bytes());
        put(section.data(), section.size());
        put(opt_state.data(), opt_state.size_bytes());
        put(settings.data(), settings.size());
    });
}

/// Reads a checkpoint written by save_checkpoint into params/state, whose sizes must match, and
/// its training progress into `progress` where given (left as default for a version-1 file).
/// Every mismatch (other model, unknown version, truncation, corruption, values no run writes)
/// is a CheckpointError; params and state may then hold part of the file (Trainer::load reads
/// into scratch buffers). What a file's sizes claim is checked against its length before any
/// allocation (the settings' texts, at most 64 x 2 x 255 bytes, are allocated as they are read).
inline void load_checkpoint(const std::filesystem::path& path, const std::string& signature,
                            std::span<float> params, std::span<float> state,
                            TrainingProgress* progress = nullptr) {
    // Opening a FIFO would wait for a writer for ever, and a folder or device is no checkpoint:
    // refused by name, unopened (opening some devices does something), and again by
    // open_regular_file on the file it opened, should one be swapped in between; it also gives the
    // size of that file. A missing path, or one that cannot be examined, is left to the open,
    // which says why.
    std::error_code status_error;
    const char* other = detail::other_than_regular_file(std::filesystem::status(path, status_error));
    PARDL_REQUIRE(other == nullptr, CheckpointError, "checkpoint ", path.string(), " is ", other,
                  ", not a regular file");
    const std::string where = "checkpoint " + path.string();
    std::string why;
    std::uintmax_t file_bytes = 0;
    const detail::FileHandle file = detail::open_regular_file(path, why, &file_bytes);
    PARDL_REQUIRE(file, CheckpointError, "cannot open ", where, ": ", why);
    std::FILE* const in = file.get();
    auto get = [&](void* p, std::size_t n, const char* what) {
        PARDL_REQUIRE(std::fread(p, 1, n, in) == n, CheckpointError, where, " is truncated (in ", what, ")");
    };
    char magic[8];
    get(magic, sizeof magic, "header");
    PARDL_REQUIRE(std::memcmp(magic, checkpoint_magic, sizeof magic) == 0, CheckpointError, where,
                  " is not a pardl checkpoint (bad magic)");
    std::uint32_t version = 0, sig_len = 0;
    get(&version, sizeof version, "header");
    PARDL_REQUIRE(version >= 1 && version <= checkpoint_version, CheckpointError, where,
                  " has format version ", version, "; this build reads versions 1 to ", checkpoint_version);
    get(&sig_len, sizeof sig_len, "header");
    PARDL_REQUIRE(sig_len < (1u << 20), CheckpointError, where, " has a corrupt header");
    std::string sig(sig_len, '\0');
    get(sig.data(), sig_len, "header");
    // A signature is text (layer names and shapes); with a control byte or bytes that are not UTF-8 the
    // header is corrupt, the model not another one, and it is not printed.
    PARDL_REQUIRE(detail::is_printable_text(sig), CheckpointError, where,
                  " has a corrupt header (its model signature is not text)");
    PARDL_REQUIRE(sig == signature, CheckpointError, where, " was written for model ", sig,
                  ", not for this model ", signature);
    std::uint64_t np = 0, ns = 0;
    std::uint32_t crc = 0;
    get(&np, sizeof np, "header");
    get(&ns, sizeof ns, "header");
    get(&crc, sizeof crc, "header");
    PARDL_REQUIRE(np == params.size() && ns == state.size(), CheckpointError, where, " holds ", np,
                  " parameters and ", ns, " state values; the model has ", params.size(), " and ",
                  state.size());
    // Everything after the header is the checksummed payload, summed as it is read.
    detail::Crc sum;
    auto take = [&](void* p, std::size_t n, const char* what) {
        get(p, n, what);
        sum.add(p, n);
    };
    take(params.data(), params.size_bytes(), "parameters");
    take(state.data(), state.size_bytes(), "state");
    TrainingProgress read;
    if (version >= 2) {
        std::uint32_t name_len = 0;
        std::uint64_t n_state = 0;
        take(&read.step, sizeof read.step, "training progress");
        take(&read.epochs, sizeof read.epochs, "training progress");
        take(&name_len, sizeof name_len, "training progress");
        PARDL_REQUIRE(name_len < 256, CheckpointError, where, " is corrupt (optimizer name of ", name_len,
                      " bytes)");
        read.optimizer.assign(name_len, '\0');
        take(read.optimizer.data(), name_len, "training progress");
        take(&read.learning_rate, sizeof read.learning_rate, "training progress");
        take(&read.optimizer_steps, sizeof read.optimizer_steps, "training progress");
        take(&n_state, sizeof n_state, "training progress");
        // An optimizer keeps a few values per parameter (Adam two): more is a corrupt size, and
        // so is one the rest of the file cannot hold. Neither may become an allocation.
        PARDL_REQUIRE(n_state <= 8 * np, CheckpointError, where, " is corrupt (", n_state,
                      " optimizer state values for ", np, " parameters)");
        const auto at = static_cast<std::uintmax_t>(::ftello(in));
        PARDL_REQUIRE(at <= file_bytes && n_state * sizeof(float) <= file_bytes - at, CheckpointError, where,
                      " is truncated (in optimizer state: ", n_state, " values announced, ",
                      at <= file_bytes ? (file_bytes - at) / sizeof(float) : 0, " in the file)");
        // Values no run writes (a rate that is negative or not a number, counts past 2^53; a
        // schedule may end at 0): a consistent checksum does not make them usable.
        constexpr std::uint64_t count_limit = 1ULL << 53;
        PARDL_REQUIRE(read.step < count_limit && read.epochs < count_limit &&
                          read.optimizer_steps < count_limit,
                      CheckpointError, where, " is corrupt (step ", read.step, ", epoch ", read.epochs,
                      ", optimizer step ", read.optimizer_steps, ")");
        PARDL_REQUIRE(read.optimizer.empty() ||
                          (std::isfinite(read.learning_rate) && read.learning_rate >= 0.0f),
                      CheckpointError, where, " is corrupt (learning rate ", read.learning_rate, ")");
        read.optimizer_state.resize(n_state);
        take(read.optimizer_state.data(), n_state * sizeof(float), "optimizer state");
    }
    if (version >= 3) {
        std::uint32_t count = 0;
        take(&count, sizeof count, "settings");
        PARDL_REQUIRE(count <= checkpoint_max_settings, CheckpointError, where, " is corrupt (", count,
                      " settings)");
        const auto text = [&] {
            unsigned char len = 0;
            take(&len, 1, "settings");
            std::string t(len, '\0');
            take(t.data(), len, "settings");
            return t;
        };
        for (std::uint32_t i = 0; i < count; ++i) {
            std::string name = text();
            read.settings.emplace_back(std::move(name), text());
        }
        const std::string problem = checkpoint_settings_problem(read.settings);
        PARDL_REQUIRE(problem.empty(), CheckpointError, where, " is corrupt (", problem, ")");
    }
    PARDL_REQUIRE(std::fgetc(in) == EOF, CheckpointError, where, " has trailing bytes");
    PARDL_REQUIRE(sum.value() == crc, CheckpointError, where, " is corrupt (checksum mismatch)");
    read.present = version >= 2;
    if (progress != nullptr) *progress = std::move(read);
}

} // namespace pardl
