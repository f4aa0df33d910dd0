// describe<Model>(): the layer / output shape / parameter-count table of a model, as text, with
// where each layer's output lives during training (a worker's activation memory).
#pragma once

#include <cstddef>
#include <cstdio>
#include <sstream>
#include <string>

namespace pardl {

/// One line per layer: index, name, output shape, parameters, and its activations:
///   "batch"       a whole-batch buffer, kept for the backward pass or read by a whole-batch layer;
///   "block"       a buffer of one block of rows that the next layer's forward reads and no
///                 backward needs (Sequential::block_local);
///   "fused in #k" a ReLU that layer k runs inside its own passes: never stored.
/// The total line adds the activation memory a worker keeps in whole-batch buffers, per sample
/// (KB: 1000 bytes).
template <class Model>
std::string describe() {
    std::ostringstream os;
    const auto names = Model::layer_names();
    const auto shapes = Model::output_shapes();
    char line[160];
    const char* row = "%-4s %-22s %-14s %12s  %s\n";
    std::snprintf(line, sizeof line, row, "#", "layer", "output", "parameters", "activations");
    os << line;
    std::snprintf(line, sizeof line, row, "-", "Input", Model::input_shape::str().c_str(), "0", "-");
    os << line;
    std::size_t kept_floats = 0;
    for (std::size_t i = 0; i < Model::layer_count; ++i) {
        std::string where;
        if (Model::fused[i]) {
            where = "fused in #" + std::to_string(Model::relu_by_next[i] ? i + 1 : i - 1);
        } else if (Model::block_local[i]) {
            where = "block";
        } else {
            where = "batch";
            kept_floats += Model::output_sizes[i];
        }
        std::snprintf(line, sizeof line, row, std::to_string(i).c_str(), names[i].c_str(), shapes[i].c_str(),
                      std::to_string(Model::param_counts[i]).c_str(), where.c_str());
        os << line;
    }
    char kept[48];
    std::snprintf(kept, sizeof kept, "%.1f KB a sample",
                  static_cast<double>(kept_floats * sizeof(float)) / 1000.0);
    std::snprintf(line, sizeof line, row, "", "total", "",
                  std::to_string(Model::learnable_param_count).c_str(), kept);
    os << line;
    return os.str();
}

} // namespace pardl
