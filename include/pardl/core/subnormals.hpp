// How a thread's floating-point unit treats subnormal floats (magnitudes below 2^-126), and a
// scope that sets it. Arithmetic on subnormals takes a microcode assist on x86 cores, 100 cycles
// or more per instruction instead of one, and training makes them: an SGD momentum buffer whose
// gradient is exactly zero for a while (weights of pixels that are blank in every image of a
// batch) shrinks by the momentum every step, and once subnormal it sticks there (0.9 times one
// unit of the last place rounds back to one unit). On W-MLP that made the optimizer update take
// 7 times as long after 3,000 steps of synthetic data and 24-39% longer after 10 epochs
// of Fashion-MNIST. Flushing them to zero, as TensorFlow's thread pools do and PyTorch's
// set_flush_denormal offers, keeps every step at full speed; it changes a result only where a
// value below 2^-126 would have been kept.
#pragma once

#if defined(__SSE__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace pardl {

/// A thread's treatment of subnormal floats: kept (IEEE 754), or flushed to zero both as results
/// and as operands. Only these bits of the floating-point control word; rounding and exception
/// masks are not touched.
class SubnormalMode {
public:
    /// Whether this target can flush (x86 with SSE: the MXCSR's FTZ and DAZ bits). Elsewhere every
    /// mode is "kept" and setting one changes nothing.
    static constexpr bool can_flush =
#if defined(__SSE__) || defined(_M_X64)
        true;
#else
        false;
#endif

    static SubnormalMode kept() noexcept {
        return SubnormalMode{0};
    }
    static SubnormalMode flushed() noexcept {
        return SubnormalMode{can_flush ? flush_bits : 0};
    }

    /// The calling thread's mode.
    static SubnormalMode current() noexcept {
#if defined(__SSE__) || defined(_M_X64)
        return SubnormalMode{_mm_getcsr() & flush_bits};
#else
        return kept();
#endif
    }

    /// Makes this the calling thread's mode.
    void apply() const noexcept {
#if defined(__SSE__) || defined(_M_X64)
        _mm_setcsr((_mm_getcsr() & ~flush_bits) | bits_);
#endif
    }

    bool flushes() const noexcept {
        return bits_ != 0;
    }
    friend bool operator==(SubnormalMode, SubnormalMode) = default;

private:
    /// MXCSR bit 15 (flush to zero: subnormal results become 0) and bit 6 (denormals are zero:
    /// subnormal operands read as 0). Both, because a flushed result cannot feed a later
    /// instruction but a subnormal input from memory (a checkpoint, a user's buffer) still would.
    static constexpr unsigned flush_bits = 0x8000u | 0x0040u;

    explicit SubnormalMode(unsigned bits) noexcept : bits_(bits) {}
    unsigned bits_;
};

/// Sets the calling thread's subnormal mode for the lifetime of the object and restores the one
/// it found. Every thread has its own mode: a thread team sets it in each member (the executors
/// give their threads the mode of the thread that called them).
class ScopedSubnormalMode {
public:
    explicit ScopedSubnormalMode(SubnormalMode mode) noexcept : saved_(SubnormalMode::current()) {
        if (mode != saved_) mode.apply();
    }
    ~ScopedSubnormalMode() {
        if (SubnormalMode::current() != saved_) saved_.apply();
    }
    ScopedSubnormalMode(const ScopedSubnormalMode&) = delete;
    ScopedSubnormalMode& operator=(const ScopedSubnormalMode&) = delete;

private:
    SubnormalMode saved_;
};

} // namespace pardl
