// A training step allocates nothing after the first one: every buffer (activations, scratch,
// worker gradients, GEMM packing panels, optimizer state) is sized once. Global operator new is
// replaced and the C allocation functions are wrapped at link time (-Wl,--wrap=...) to count.
#include <catch2/catch.hpp>

#include <pardl/pardl.hpp>
#if defined(PARDL_HAS_OPENMP)
#include <pardl/policies/openmp.hpp>
#include <pardl/policies/tensor_parallel.hpp>
#endif

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

namespace {
std::atomic<long> allocations{0};
}

extern "C" {
void* __real_malloc(std::size_t);
void* __real_calloc(std::size_t, std::size_t);
void* __real_realloc(void*, std::size_t);
void* __real_aligned_alloc(std::size_t, std::size_t);
int __real_posix_memalign(void**, std::size_t, std::size_t);
void* __wrap_malloc(std::size_t n) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    return __real_malloc(n);
}
void* __wrap_calloc(std::size_t n, std::size_t s) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    return __real_calloc(n, s);
}
void* __wrap_realloc(void* p, std::size_t n) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    return __real_realloc(p, n);
}
void* __wrap_aligned_alloc(std::size_t a, std::size_t n) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    return __real_aligned_alloc(a, n);
}
int __wrap_posix_memalign(void** p, std::size_t a, std::size_t n) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    return __real_posix_memalign(p, a, n);
}
}

// The replacements pair with __real_malloc / __real_aligned_alloc, whose memory std::free releases;
// GCC cannot see that pairing through the wrappers.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#if defined(__has_feature)
#if __has_feature(address_sanitizer) // Clang's way of saying -fsanitize=address
#define PARDL_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(PARDL_TEST_ASAN)
// Nor can AddressSanitizer, which tags each block with the allocator it came from: at exit it
// reported blocks of Catch's test registry, freed here with std::free, as "operator new vs free".
// The pairing is intended; its other checks stay on (the asan-ubsan preset).
extern "C" const char* __asan_default_options() {
    return "alloc_dealloc_mismatch=0";
}
#endif

void* operator new(std::size_t n) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = __real_malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
    return operator new(n);
}
void* operator new(std::size_t n, std::align_val_t a) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    const auto al = static_cast<std::size_t>(a);
    if (void* p = __real_aligned_alloc(al, (n + al - 1) / al * al)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
    return operator new(n, a);
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
    std::free(p);
}

using namespace pardl;

namespace {

using Mlp = Sequential<Input<20>, Dense<32>, ReLU, Dense<16>, Tanh, Dense<5>>;
/// What TensorParallel can run: convolutions, then Dense layers.
using TeamCnn = Sequential<Input<1, 10, 10>, Conv2D<4, 3, 1, 1>, ReLU, MaxPool2D<2>, Flatten, Dense<6>>;
using Cnn = Sequential<Input<1, 10, 10>, Conv2D<4, 3, 1, 1>, BatchNorm<>, ReLU, MaxPool2D<2>, Dropout<200>,
                       Flatten, Dense<6>>;

/// Allocations during `steps` steps that follow two warm-up steps.
template <class Model, class Policy, class Opt>
long allocations_in_steps(const Dataset& data, Opt opt, std::size_t threads, std::size_t steps,
                          Timeline* timeline = nullptr, float clip_grad_norm = 0) {
    TrainerOptions o;
    o.batch = 24;
    o.threads = threads;
    o.log = false;
    o.timeline = timeline;
    o.clip_grad_norm = clip_grad_norm;
    Trainer<Model, SoftmaxCrossEntropy, Opt, Policy> trainer(std::move(opt), o);
    BatchLoader loader(data, o.batch, o.seed);
    loader.start_epoch(1);
    trainer.step(data, loader.batch_indices(0));
    trainer.step(data, loader.batch_indices(1));
    const long before = allocations.load();
    for (std::size_t s = 0; s < steps; ++s)
        trainer.step(data, loader.batch_indices(s % loader.batches_per_epoch()));
    return allocations.load() - before;
}

} // namespace

TEST_CASE("The allocation counter counts", "[alloc]") {
    // Guards against a vacuous zero: each allocation path the library uses must be seen.
    const long before = allocations.load();
    auto* p = new int(3);
    asm volatile("" : : "g"(p) : "memory"); // keep the compiler from eliding the pair
    delete p;
    const long after_new = allocations.load();
    AlignedBuffer<float> buffer(1000); // std::aligned_alloc
    asm volatile("" : : "g"(buffer.data()) : "memory");
    const long after_aligned = allocations.load();
    std::vector<double> v(10);
    asm volatile("" : : "g"(v.data()) : "memory");
    CHECK(after_new - before == 1);
    CHECK(after_aligned - after_new == 1);
    CHECK(allocations.load() - after_aligned == 1);
}

TEST_CASE("A serial training step allocates nothing after the first", "[alloc]") {
    const Dataset mlp_data = make_blobs(100, 20, 5, 1); // the last batch of 100/24 is short
    CHECK(allocations_in_steps<Mlp, Serial>(mlp_data, SGD({.lr = 0.01f, .momentum = 0.9f}), 1, 10) == 0);
    CHECK(allocations_in_steps<Mlp, Serial>(mlp_data, Adam(), 1, 10) == 0);
    const Dataset cnn_data = make_images(100, 1, 10, 10, 6, 2);
    CHECK(allocations_in_steps<Cnn, Serial>(cnn_data, SGD({.lr = 0.01f, .momentum = 0.9f}), 1, 10) == 0);
    // Gradient clipping: the norm's partial sums in the worker sum, the update in a second pass.
    CHECK(allocations_in_steps<Mlp, Serial>(mlp_data, Adam(), 1, 10, nullptr, 1e-3f) == 0);
}

#if defined(PARDL_HAS_OPENMP)
TEST_CASE("An OpenMP training step allocates nothing after the first", "[alloc][openmp]") {
    const Dataset mlp_data = make_blobs(100, 20, 5, 1);
    CHECK(allocations_in_steps<Mlp, OpenMP>(mlp_data, SGD({.lr = 0.01f, .momentum = 0.9f}), 2, 10) == 0);
    const Dataset cnn_data = make_images(100, 1, 10, 10, 6, 2);
    CHECK(allocations_in_steps<Cnn, OpenMP>(cnn_data, SGD({.lr = 0.01f, .momentum = 0.9f}), 2, 10) == 0);
    CHECK(allocations_in_steps<Cnn, OpenMP>(cnn_data, SGD({.lr = 0.01f, .momentum = 0.9f}), 2, 10, nullptr,
                                            1e-3f) == 0);
}

TEST_CASE("A TensorParallel training step allocates nothing after the first", "[alloc][tensor]") {
    const Dataset mlp_data = make_blobs(100, 20, 5, 1);
    CHECK(allocations_in_steps<Mlp, TensorParallel>(mlp_data, SGD({.lr = 0.01f, .momentum = 0.9f}), 2, 10) ==
          0);
    CHECK(allocations_in_steps<Mlp, TensorParallel>(mlp_data, Adam(), 3, 10) == 0);
    // Convolutions shared by rows (Sequential::team_prefix).
    const Dataset cnn_data = make_images(100, 1, 10, 10, 6, 2);
    CHECK(allocations_in_steps<TeamCnn, TensorParallel>(cnn_data, SGD({.lr = 0.01f, .momentum = 0.9f}), 2,
                                                        10) == 0);
    // Gradient clipping in a team: the whole sum's norm, then the update of every parameter.
    CHECK(allocations_in_steps<Mlp, TensorParallel>(mlp_data, Adam(), 2, 10, nullptr, 1e-3f) == 0);
}
#endif

TEST_CASE("Recording a timeline allocates nothing during the steps", "[alloc][timeline]") {
    const Dataset mlp_data = make_blobs(100, 20, 5, 1);
    Timeline serial_timeline(1); // its buffers are allocated here, before the steps
    CHECK(allocations_in_steps<Mlp, Serial>(mlp_data, SGD({.lr = 0.01f, .momentum = 0.9f}), 1, 10,
                                            &serial_timeline) == 0);
    CHECK(serial_timeline.events(0).size() == 3 * 12);
    Timeline tiny(1, 4); // a full timeline drops without allocating
    CHECK(allocations_in_steps<Mlp, Serial>(mlp_data, Adam(), 1, 10, &tiny) == 0);
    CHECK(tiny.dropped() > 0);
#if defined(PARDL_HAS_OPENMP)
    const Dataset cnn_data = make_images(100, 1, 10, 10, 6, 2);
    Timeline omp_timeline(2);
    CHECK(allocations_in_steps<Cnn, OpenMP>(cnn_data, SGD({.lr = 0.01f, .momentum = 0.9f}), 2, 10,
                                            &omp_timeline) == 0);
    CHECK(omp_timeline.events(1).size() == 3 * 12);
#endif
}
