// A program that consumes pardl as a downstream project does: found with find_package or
// pkg-config after an install, or pulled in with add_subdirectory. The umbrella header compiles as
// C++20, a small model trains, and a checkpoint goes to disk and back (its CRC-32 is zlib's, so the
// link proves that the package brings zlib along); the optional components link.
#include <pardl/pardl.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <unistd.h>

#ifdef PARDL_HAS_OPENMP
#include <omp.h>
#endif
#ifdef PARDL_HAS_MPI
#include <mpi.h>
#endif

namespace {
using Model = pardl::Sequential<pardl::Input<4>, pardl::Dense<8>, pardl::ReLU, pardl::Dense<3>>;
using Trainer = pardl::Trainer<Model, pardl::SoftmaxCrossEntropy, pardl::SGD, pardl::Serial>;

pardl::TrainerOptions quiet_options() {
    pardl::TrainerOptions options;
    options.batch = 16;
    options.log = false;
    options.progress = false;
    return options;
}
} // namespace

int main() {
    int failures = 0;
    const auto fail = [&](const char* what) {
        std::printf("FAIL: %s\n", what);
        ++failures;
    };
    if (pardl::Shape<1, 28, 28>::size != 784) fail("pardl::Shape<1, 28, 28>::size != 784");

    const pardl::Dataset data = pardl::make_blobs(64, 4, 3, /*seed=*/7);
    Trainer trainer(pardl::SGD({.lr = 0.1f}), quiet_options());
    const pardl::Evaluation before = trainer.evaluate(data);
    trainer.fit(data, nullptr, 3);
    const pardl::Evaluation after = trainer.evaluate(data);
    if (!(after.loss < before.loss)) fail("three epochs did not lower the training loss");

    struct RemovedAtExit { // the checkpoint goes away however this scope is left
        std::filesystem::path path;
        ~RemovedAtExit() {
            std::error_code ec;
            std::filesystem::remove(path, ec);
        }
    } ckpt{std::filesystem::temp_directory_path() /
           ("pardl_consumer_" + std::to_string(::getpid()) + ".ckpt")};
    trainer.save(ckpt.path);
    Trainer restored(pardl::SGD({.lr = 0.1f}), quiet_options());
    restored.load(ckpt.path);
    const auto saved = trainer.parameters(), loaded = restored.parameters();
    if (!std::equal(saved.begin(), saved.end(), loaded.begin(), loaded.end()))
        fail("a checkpoint did not restore the parameters bit for bit");
#ifdef PARDL_HAS_OPENMP
    if (omp_get_max_threads() < 1) fail("omp_get_max_threads() < 1");
    std::puts("openmp component: linked");
#endif
#ifdef PARDL_HAS_MPI
    // Callable before MPI_Init, so the test needs no launcher; it proves the MPI library links.
    int version = 0, subversion = 0;
    if (MPI_Get_version(&version, &subversion) != MPI_SUCCESS || version < 3) fail("MPI_Get_version");
    std::printf("mpi component: linked (MPI %d.%d)\n", version, subversion);
#endif
    std::printf("loss %.4f -> %.4f after 3 epochs\n", before.loss, after.loss);
    if (failures == 0) std::puts("pardl consumer: OK");
    return failures == 0 ? 0 : 1;
}
