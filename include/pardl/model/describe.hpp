// describe<Model>(): the layer / output shape / parameter-count table of a model, as text.
#pragma once

#include <cstdio>
#include <sstream>
#include <string>

namespace pardl {

template <class Model>
std::string describe() {
    std::ostringstream os;
    const auto names = Model::layer_names();
    const auto shapes = Model::output_shapes();
    char line[128];
    std::snprintf(line, sizeof line, "%-4s %-22s %-14s %12s\n", "#", "layer", "output", "parameters");
    os << line;
    std::snprintf(line, sizeof line, "%-4s %-22s %-14s %12s\n", "-", "Input",
                  Model::input_shape::str().c_str(), "0");
    os << line;
    for (std::size_t i = 0; i < Model::layer_count; ++i) {
        std::snprintf(line, sizeof line, "%-4zu %-22s %-14s %12zu\n", i, names[i].c_str(), shapes[i].c_str(),
                      Model::param_counts[i]);
        os << line;
    }
    std::snprintf(line, sizeof line, "%-4s %-22s %-14s %12zu\n", "", "total", "",
                  Model::learnable_param_count);
    os << line;
    return os.str();
}

} // namespace pardl
