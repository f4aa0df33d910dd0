// Flat, 64-byte aligned, owning float buffers: the storage behind parameters, gradients,
// activations and workspaces. Alignment lets the SIMD kernels use aligned loads on row starts.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <span>
#include <utility>

namespace pardl {

inline constexpr std::size_t buffer_alignment = 64;

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
        const std::size_t bytes =
            (n * sizeof(T) + buffer_alignment - 1) / buffer_alignment * buffer_alignment;
        void* p = std::aligned_alloc(buffer_alignment, bytes);
        if (!p) throw std::bad_alloc();
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
