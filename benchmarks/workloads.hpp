// The reference workloads of pardl's benchmarks, report and main job: W-MLP (and, once the
// convolution layers exist, W-CNN), with the training configuration the issues fix.
#pragma once

#include <pardl/pardl.hpp>

namespace pardl::bench {

/// W-MLP: 784-256-ReLU-128-ReLU-10 on Fashion-MNIST (1.007 MFLOP per image per training step).
using WMlp = Sequential<Input<784>, Dense<256>, ReLU, Dense<128>, ReLU, Dense<10>>;

} // namespace pardl::bench
