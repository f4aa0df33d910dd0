// Must NOT compile: this file is built without OpenMP and without PARDL_HAS_MPI, so pardl.hpp's
// OpenMP (or, with -DPARDL_USE_MPI, MPI) is a stand-in whose Trainer says what to link. With
// -DPARDL_CONTROL the same program under Serial must build, and with -fopenmp alone (no
// PARDL_HAS_OPENMP) the OpenMP one (policy_openmp_by_flag).
#include "pardl/pardl.hpp"

using Model = pardl::Sequential<pardl::Input<8>, pardl::Dense<4>>;
#if defined(PARDL_CONTROL)
using Policy = pardl::Serial;
#elif defined(PARDL_USE_MPI)
using Policy = pardl::MPI;
#else
using Policy = pardl::OpenMP;
#endif

int main() {
    pardl::Trainer<Model, pardl::SoftmaxCrossEntropy, pardl::SGD, Policy> trainer(pardl::SGD{}, {});
    return static_cast<int>(trainer.workers() % 2);
}
