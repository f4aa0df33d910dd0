// The reference workloads of pardl's benchmarks, report and main job (W-MLP and W-CNN), with
// the layer sizes the issues fix; the training configuration is set by the programs.
#pragma once

#include <pardl/pardl.hpp>

namespace pardl::bench {

/// W-MLP: 784-256-ReLU-128-ReLU-10 on Fashion-MNIST (1.007 MFLOP per image per training step).
using WMlp = Sequential<Input<784>, Dense<256>, ReLU, Dense<128>, ReLU, Dense<10>>;

/// W-CNN: Conv(1->32, 3x3, pad 1)-ReLU-MaxPool 2 - Conv(32->64, 3x3, pad 1)-ReLU-MaxPool 2 -
/// Flatten - Dense 256 - ReLU - Dense 10 (27.4 MFLOP per image per training step).
using WCnn = Sequential<Input<1, 28, 28>, Conv2D<32, 3, 1, 1>, ReLU, MaxPool2D<2>, Conv2D<64, 3, 1, 1>, ReLU,
                        MaxPool2D<2>, Flatten, Dense<256>, ReLU, Dense<10>>;

} // namespace pardl::bench
