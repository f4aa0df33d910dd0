// The checkpoint format's byte layout as the tests see it (train/checkpoint.hpp writes it): where
// each section starts, and the by-hand edits that build files no current writer makes (an older
// version, a corrupt field under a valid checksum). One place to change with the format.
#pragma once

#include <zlib.h>

#include <pardl/train/checkpoint.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

namespace checkpoint_layout {

inline std::vector<char> read_bytes(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
inline void write_bytes(const std::filesystem::path& p, const std::vector<char>& b) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(b.data(), static_cast<std::streamsize>(b.size()));
}

/// Header: magic 8, version 4, signature length 4, signature, counts 8 + 8, CRC-32 4. The
/// checksummed payload follows it.
inline std::size_t header_size(const std::string& sig) {
    return 8 + 4 + 4 + sig.size() + 8 + 8 + 4;
}
/// The settings section (version 3, last in the file): count 4, then per setting a length byte
/// and the name, a length byte and the value.
inline std::size_t settings_size(const std::vector<std::pair<std::string, std::string>>& settings) {
    std::size_t n = 4;
    for (const auto& [name, value] : settings) n += 1 + name.size() + 1 + value.size();
    return n;
}
/// After the parameters and state (version 2): step 8, epochs 8, optimizer name length 4, name,
/// learning rate 4, optimizer steps 8, optimizer state count 8, the state's floats; then the
/// settings.
inline std::size_t progress_size(const pardl::TrainingProgress& t) {
    return 8 + 8 + 4 + t.optimizer.size() + 4 + 8 + 8 + 4 * t.optimizer_state.size() +
           settings_size(t.settings);
}

/// Makes the CRC in the header of `bytes` (a checkpoint for model `sig`) match its payload again.
inline void fix_checksum(std::vector<char>& bytes, const std::string& sig) {
    const std::size_t payload = header_size(sig);
    const auto crc = static_cast<std::uint32_t>(crc32(crc32(0L, Z_NULL, 0),
                                                      reinterpret_cast<const Bytef*>(bytes.data() + payload),
                                                      static_cast<uInt>(bytes.size() - payload)));
    std::memcpy(bytes.data() + payload - 4, &crc, 4);
}

/// A version-3 checkpoint as version 2 wrote it: without its settings section (`settings_bytes`
/// long, at the end), relabelled and re-summed.
inline void make_version_2(std::vector<char>& bytes, const std::string& sig, std::size_t settings_bytes) {
    bytes.resize(bytes.size() - settings_bytes);
    const std::uint32_t version = 2;
    std::memcpy(bytes.data() + 8, &version, 4);
    fix_checksum(bytes, sig);
}

} // namespace checkpoint_layout
