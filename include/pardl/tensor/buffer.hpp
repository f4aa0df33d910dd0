// Flat, 64-byte aligned, owning float buffers: the storage behind parameters, gradients,
// activations and workspaces. Alignment lets the SIMD kernels use aligned loads on row starts.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>
#include <span>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pardl {

/// Every buffer starts on a cache line (64 bytes on the x86-64 machines pardl targets).
inline constexpr std::size_t buffer_alignment = 64;
/// Floats in one cache line: the unit of prefetch requests, of the cuts between threads' shares
/// (line_share: the worker sum's, a tensor-parallel layer's columns, for_chunks') and of the layers'
/// parameter blocks.
inline constexpr std::size_t cache_line_floats = buffer_alignment / sizeof(float);

namespace detail {
/// Asks the kernel to back [p, p + bytes) with transparent huge pages. Advice only: where there
/// are none (another OS, or disabled), nothing changes.
inline void advise_huge_pages(void* p, std::size_t bytes) noexcept {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    (void)madvise(p, bytes, MADV_HUGEPAGE);
#else
    (void)p, (void)bytes;
#endif
}
} // namespace detail

/// A fixed-size aligned array of T, zero-initialised. Move-only; resizing reallocates.
template <class T>
class AlignedBuffer {
public:
    AlignedBuffer() = default;
    explicit AlignedBuffer(std::size_t n) { resize(n); }
    // A moved-from buffer is empty (the defaulted moves would leave size_ with a null pointer).
    AlignedBuffer(AlignedBuffer&& o) noexcept : data_(std::move(o.data_)), size_(std::exchange(o.size_, 0)) {}
    AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
        data_ = std::move(o.data_);
        size_ = std::exchange(o.size_, 0);
        return *this;
    }

    /// Reallocates to exactly n zeroed elements (contents are not kept).
    void resize(std::size_t n) {
        if (n == size_) {
            zero();
            return;
        }
        data_.reset();
        size_ = 0;
        if (n == 0) return;
        // A buffer of several MiB (a dataset's features, a large batch's activations) starts on a
        // 2 MiB boundary and is offered to the kernel as transparent huge pages. Gathering a
        // batch's rows from a 188 MB dataset otherwise touches a new 4 KiB page, and misses the
        // TLB, at every row: on an Intel Xeon that was a third of W-MLP's data phase.
        constexpr std::size_t huge_page = std::size_t{2} << 20;
        // A count whose bytes do not fit a size_t is no allocation, not a small wrapped one.
        if (n > (std::numeric_limits<std::size_t>::max() - huge_page) / sizeof(T)) throw std::bad_alloc();
        const bool huge = n * sizeof(T) >= 2 * huge_page;
        const std::size_t alignment = huge ? huge_page : buffer_alignment;
        const std::size_t bytes = (n * sizeof(T) + alignment - 1) / alignment * alignment;
        void* p = std::aligned_alloc(alignment, bytes);
        if (!p) throw std::bad_alloc();
        if (huge) detail::advise_huge_pages(p, bytes);
        data_.reset(static_cast<T*>(p));
        size_ = n;
        zero();
    }

    void zero() noexcept { std::fill_n(data_.get(), size_, T{}); }

    T* data() noexcept { return data_.get(); }
    const T* data() const noexcept { return data_.get(); }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    T& operator[](std::size_t i) noexcept { return data_[i]; }
    const T& operator[](std::size_t i) const noexcept { return data_[i]; }
    T* begin() noexcept { return data(); }
    T* end() noexcept { return data() + size_; }
    const T* begin() const noexcept { return data(); }
    const T* end() const noexcept { return data() + size_; }

    std::span<T> span() noexcept { return {data(), size_}; }
    std::span<const T> span() const noexcept { return {data(), size_}; }
    operator std::span<T>() noexcept { return span(); }
    operator std::span<const T>() const noexcept { return span(); }

private:
    struct FreeDeleter {
        void operator()(T* p) const noexcept { std::free(p); }
    };
    std::unique_ptr<T[], FreeDeleter> data_;
    std::size_t size_ = 0;
};

} // namespace pardl
