// The umbrella header: everything a program needs to define, train and evaluate models.
// The OpenMP policies are included when the compiler has OpenMP on (-fopenmp, which pardl::openmp
// adds, defining PARDL_HAS_OPENMP too), the MPI ones when PARDL_HAS_MPI is defined (pardl::mpi);
// without them their names are stand-ins (policies/unlinked.hpp) that stop a Trainer's build
// saying what to link.
#pragma once

#include "pardl/core/errors.hpp"
#include "pardl/core/rng.hpp"
#include "pardl/core/subnormals.hpp"
#include "pardl/data/data.hpp"
#include "pardl/execution/partition.hpp"
#include "pardl/layers/avg_pool2d.hpp"
#include "pardl/layers/batch_norm.hpp"
#include "pardl/layers/conv2d.hpp"
#include "pardl/layers/dense.hpp"
#include "pardl/layers/dropout.hpp"
#include "pardl/layers/flatten.hpp"
#include "pardl/layers/max_pool2d.hpp"
#include "pardl/layers/relu.hpp"
#include "pardl/layers/sigmoid.hpp"
#include "pardl/layers/tanh.hpp"
#include "pardl/losses/mse.hpp"
#include "pardl/losses/softmax_cross_entropy.hpp"
#include "pardl/model/describe.hpp"
#include "pardl/model/sequential.hpp"
#include "pardl/optimizers/adam.hpp"
#include "pardl/optimizers/optimizer_choice.hpp"
#include "pardl/optimizers/schedule.hpp"
#include "pardl/optimizers/sgd.hpp"
#include "pardl/policies/policy.hpp"
#include "pardl/tensor/init.hpp"
#include "pardl/tensor/shape.hpp"
#include "pardl/train/trainer.hpp"

#if defined(_OPENMP)
#include "pardl/policies/openmp.hpp"
#include "pardl/policies/tensor_parallel.hpp"
#else
// Without OpenMP the names still exist, as stand-ins whose use says what to link.
#include "pardl/policies/unlinked.hpp"
namespace pardl {
using OpenMP = Policy<detail::OpenMPNotCompiledIn, LocalComm>;
using TensorParallel = OpenMP;
} // namespace pardl
#endif
#if defined(PARDL_HAS_MPI)
#include "pardl/policies/mpi.hpp"
#if defined(_OPENMP)
#include "pardl/policies/hybrid.hpp"
#else
namespace pardl {
using Hybrid = Policy<detail::OpenMPNotCompiledIn, MpiComm>;
} // namespace pardl
#endif
#else
#include "pardl/policies/unlinked.hpp"
#define PARDL_MPI_STAND_INS 1
namespace pardl {
using MPI = Policy<SerialExecutor, detail::MpiNotLinked>;
using Hybrid = MPI;
} // namespace pardl
#endif
