// Runs a test case once per instruction set this CPU runs, for code with one path per instruction
// set (pardl/tensor/simd.hpp): each path gets the same checks.
#pragma once

#include "pardl/tensor/simd.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace pardl_test {

/// A Catch generator over simd::supported(): the calling test case runs once per element.
inline pardl::simd::Isa each_supported_isa() {
    const std::vector<pardl::simd::Isa> isas(pardl::simd::supported().begin(),
                                             pardl::simd::supported().end());
    return GENERATE_COPY(from_range(isas));
}

} // namespace pardl_test

namespace Catch {
template <>
struct StringMaker<pardl::simd::Isa> {
    static std::string convert(pardl::simd::Isa isa) { return std::string(pardl::simd::name(isa)); }
};
} // namespace Catch

/// Makes the enclosing test case run once per supported instruction set, with that set forced
/// (simd::ScopedIsa) and named in failure messages.
#define PARDL_TEST_EACH_SUPPORTED_ISA()                                                                      \
    const pardl::simd::Isa pardl_test_isa = pardl_test::each_supported_isa();                                \
    const pardl::simd::ScopedIsa pardl_test_forced_isa(pardl_test_isa);                                      \
    INFO("instruction set: " << pardl::simd::name(pardl_test_isa))
