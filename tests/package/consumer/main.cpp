// Smoke test for a project that consumes pardl (installed via find_package, or via add_subdirectory):
// the headers are found, compile as C++20, and the optional components link.

// The pardl headers a consumer needs; swap for <pardl/pardl.hpp> once the umbrella header exists.
#include <pardl/core/rng.hpp>
#include <pardl/tensor/shape.hpp>

#include <cstdio>

#ifdef PARDL_HAS_OPENMP
#include <omp.h>
#endif
#ifdef PARDL_HAS_MPI
#include <mpi.h>
#endif

int main() {
    int failures = 0;
    if (pardl::Shape<1, 28, 28>::size != 784) {
        std::puts("FAIL: pardl::Shape<1, 28, 28>::size != 784");
        ++failures;
    }
    pardl::Rng a(42), b(42);
    if (a.next() != b.next()) {
        std::puts("FAIL: pardl::Rng is not deterministic");
        ++failures;
    }
#ifdef PARDL_HAS_OPENMP
    if (omp_get_max_threads() < 1) {
        std::puts("FAIL: omp_get_max_threads() < 1");
        ++failures;
    }
    std::puts("openmp component: linked");
#endif
#ifdef PARDL_HAS_MPI
    // Callable before MPI_Init, so the test needs no launcher; it proves the MPI library links.
    int version = 0, subversion = 0;
    if (MPI_Get_version(&version, &subversion) != MPI_SUCCESS || version < 3) {
        std::puts("FAIL: MPI_Get_version");
        ++failures;
    }
    std::printf("mpi component: linked (MPI %d.%d)\n", version, subversion);
#endif
    if (failures == 0) std::puts("pardl consumer: OK");
    return failures == 0 ? 0 : 1;
}
