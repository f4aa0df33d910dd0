// Run-time choice of the instruction set for pardl's vector kernels, so that one binary built for
// generic x86-64 still runs AVX-512 or AVX2+FMA code on CPUs that have it.
//
// xsimd's own dispatch wants each architecture's kernels in a translation unit of their own,
// compiled with that architecture's flags; a header-only library cannot ship those. Instead the
// kernels for each instruction set are compiled inside a target region (PARDL_SIMD_TARGET_BEGIN /
// PARDL_SIMD_TARGET_END below), and callers switch once per call on simd::active().
#pragma once

#include "pardl/core/errors.hpp"

#include <xsimd/xsimd.hpp>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/// Defined when this compiler can build the x86 target regions (GCC or Clang on x86-64).
#define PARDL_SIMD_X86 1
#include <cpuid.h>
#endif

namespace pardl::simd {

/// An instruction set pardl has kernels for. `generic` is the portable path: xsimd's widest
/// architecture among the compiler's flags (SSE2 for plain x86-64, AVX-512 under -march=native on
/// such a CPU, NEON on ARM), or plain floats without SIMD.
enum class Isa { generic, avx2, avx512 };

inline constexpr std::array<Isa, 3> all_isas = {Isa::generic, Isa::avx2, Isa::avx512};

constexpr std::string_view name(Isa isa) noexcept {
    switch (isa) {
    case Isa::avx2:
        return "avx2";
    case Isa::avx512:
        return "avx512";
    case Isa::generic:
        break;
    }
    return "generic";
}

namespace detail {

#if defined(PARDL_SIMD_X86)
/// Whether the OS saves the given XCR0 state components on context switches: a CPU may have
/// AVX-512 while the kernel does not enable it. xsimd 8.1 reads CPUID only, so this is checked here.
inline bool os_saves_state(unsigned xcr0_bits) noexcept {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
    constexpr unsigned osxsave = 1u << 27;
    if (!(ecx & osxsave)) return false;
    unsigned lo = 0, hi = 0;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & xcr0_bits) == xcr0_bits;
}
#endif

/// Whether this CPU and this build can run the kernels of `isa`.
inline bool runs(Isa isa) noexcept {
    if (isa == Isa::generic) return true;
#if defined(PARDL_SIMD_X86)
    const auto cpu = xsimd::available_architectures();
    constexpr unsigned sse_avx_state = 0x6; // XMM and YMM registers
    constexpr unsigned avx512_state = 0xE6; // plus the opmask and the ZMM registers
    const bool avx2_fma = cpu.avx2 && cpu.fma3_avx2;
    if (isa == Isa::avx2) return avx2_fma && os_saves_state(sse_avx_state);
    if (isa == Isa::avx512) return avx2_fma && cpu.avx512f && os_saves_state(avx512_state);
#endif
    return false;
}

/// The instruction sets runs() accepts, generic first and best last.
struct SupportedList {
    std::array<Isa, all_isas.size()> isas{};
    std::size_t count = 0;

    SupportedList() noexcept {
        for (Isa isa : all_isas)
            if (runs(isa)) isas[count++] = isa;
    }
};

inline std::string supported_names(std::span<const Isa> isas) {
    std::string names;
    for (Isa isa : isas) names.append(names.empty() ? "" : ", ").append(name(isa));
    return names;
}

/// The instruction set named by PARDL_SIMD's value `requested` (null or empty: unset, so the best
/// one). Throws ConfigError for a name that is not an Isa or one this CPU cannot run.
inline Isa choose(const char* requested, std::span<const Isa> supported) {
    if (requested == nullptr || *requested == '\0') return supported.back();
    const std::string_view wanted(requested);
    for (Isa isa : all_isas) {
        if (name(isa) != wanted) continue;
        for (Isa ok : supported)
            if (ok == isa) return isa;
        throw ConfigError(pardl::detail::concat(
            "PARDL_SIMD=", wanted, ": this CPU (or this build) runs only ", supported_names(supported)));
    }
    throw ConfigError(
        pardl::detail::concat("PARDL_SIMD=", wanted, " is not one of ", supported_names(all_isas)));
}

/// The ScopedIsa in force, or -1.
inline std::atomic<int> forced{-1};

} // namespace detail

/// The instruction sets this CPU and this build can run, generic first and best last.
inline std::span<const Isa> supported() noexcept {
    static const detail::SupportedList list;
    return {list.isas.data(), list.count};
}

/// Whether `isa` is among supported().
inline bool is_supported(Isa isa) noexcept {
    for (Isa ok : supported())
        if (ok == isa) return true;
    return false;
}

/// The instruction set the kernels use: a ScopedIsa's if one is alive, else the one PARDL_SIMD names
/// (generic, avx2 or avx512), else the best supported. PARDL_SIMD is read once, on the first call;
/// a value that is not an Isa or that the CPU cannot run throws ConfigError (on every call).
inline Isa active() {
    const int scoped = detail::forced.load(std::memory_order_relaxed);
    if (scoped >= 0) return static_cast<Isa>(scoped);
    static const Isa chosen = detail::choose(std::getenv("PARDL_SIMD"), supported());
    return chosen;
}

/// Forces active() to `isa` for its lifetime (then restores the previous choice), so that tests
/// and benchmarks can run every supported path in one process. It is process-wide: create it
/// before starting the threads that compute, not while they run. Throws ConfigError if `isa` is
/// not supported.
class ScopedIsa {
public:
    explicit ScopedIsa(Isa isa) {
        PARDL_REQUIRE(is_supported(isa), ConfigError, "ScopedIsa(", name(isa),
                      "): this CPU (or this build) runs only ", detail::supported_names(supported()));
        previous_ = detail::forced.exchange(static_cast<int>(isa), std::memory_order_relaxed);
    }
    ~ScopedIsa() { detail::forced.store(previous_, std::memory_order_relaxed); }
    ScopedIsa(const ScopedIsa&) = delete;
    ScopedIsa& operator=(const ScopedIsa&) = delete;

private:
    int previous_ = -1;
};

#if defined(PARDL_SIMD_X86)
/// The AVX-512 lane mask (an __mmask16) of the first n of 16 float lanes, all of them for n >= 16:
/// the one computation behind the masked loads and stores of short rows and tails.
constexpr std::uint16_t first_lanes(std::size_t n) noexcept {
    return n >= 16 ? std::uint16_t{0xFFFF} : static_cast<std::uint16_t>((1u << n) - 1u);
}
#endif

} // namespace pardl::simd

// Target regions: functions (templates included) declared between BEGIN and END are compiled for
// the instruction set whatever the command line's -m flags, and may use its <immintrin.h>
// intrinsics. Callers must check simd::is_supported first. The AVX-512 kernels use AVX512F only,
// which every AVX-512 CPU has.
#if defined(PARDL_SIMD_X86)
#define PARDL_SIMD_TARGET_AVX2 "avx2,fma"
#define PARDL_SIMD_TARGET_AVX512 "avx512f,avx2,fma"
#define PARDL_SIMD_PRAGMA(text) _Pragma(#text)
#if defined(__clang__)
#define PARDL_SIMD_TARGET_BEGIN(isa_flags)                                                                   \
    PARDL_SIMD_PRAGMA(clang attribute push(__attribute__((target(isa_flags))), apply_to = function))
#define PARDL_SIMD_TARGET_END _Pragma("clang attribute pop")
#else
#define PARDL_SIMD_TARGET_BEGIN(isa_flags)                                                                   \
    _Pragma("GCC push_options") PARDL_SIMD_PRAGMA(GCC target(isa_flags))
#define PARDL_SIMD_TARGET_END _Pragma("GCC pop_options")
#endif
#endif

#if defined(PARDL_SIMD_X86)
#include <immintrin.h>

namespace pardl::simd {
PARDL_SIMD_TARGET_BEGIN(PARDL_SIMD_TARGET_AVX2)
/// The AVX2 lane mask (all bits set in a lane) of the first n of 8 32-bit lanes, all of them for
/// n >= 8: first_lanes for the masked loads and stores of AVX2 (vmaskmov).
inline __m256i first_lanes_avx2(std::size_t n) noexcept {
    const int count = n >= 8 ? 8 : static_cast<int>(n);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/// Stores the first n 32-bit lanes of v (floats or integers, as bits) at p, all 8 for n >= 8: one
/// store, or pieces of 4, 2 and 1 lanes. Not vmaskmov: AMD CPUs run that store as microcode, which
/// made the AVX2 max pooling slower than its portable loop on Zen 4. Always inlined: GCC 12 split
/// it into an out-of-line part that returned with the upper halves of the ymm registers dirty (no
/// vzeroupper), and the next legacy-SSE code (glibc's exp in the softmax) ran at a fraction of
/// its speed.
[[gnu::always_inline]] inline void store_first_avx2(void* p, std::size_t n, __m256i v) noexcept {
    auto* out = static_cast<char*>(p);
    if (n >= 8) return _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), v);
    __m128i part = _mm256_castsi256_si128(v);
    if (n >= 4) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out), part);
        part = _mm256_extracti128_si256(v, 1);
        out += 16;
        n -= 4;
    }
    if (n >= 2) {
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out), part);
        part = _mm_srli_si128(part, 8);
        out += 8;
        n -= 2;
    }
    if (n == 1) {
        const int last = _mm_cvtsi128_si32(part);
        std::memcpy(out, &last, sizeof last);
    }
}
PARDL_SIMD_TARGET_END
} // namespace pardl::simd
#endif
