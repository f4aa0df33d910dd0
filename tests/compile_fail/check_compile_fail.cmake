# Compile-fail harness, run as `cmake -P`: compiles one source with -fsyntax-only and checks the
# outcome. With EXPECT=fail the compile must fail AND its diagnostics must match every regex in
# PATTERN (a list, so a check can require the message, the layer index and the shape, each in
# whatever order the compiler prints them). With EXPECT=pass it must compile cleanly.
#
#   cmake -DCXX=<compiler> -DINCLUDE_DIRS=<dir;dir> -DSOURCE=<file.cpp> -DEXPECT=fail|pass
#         [-DPATTERN=<regex;regex>] [-DFLAGS=<flag;flag>] [-DERRORS=<n>] -P check_compile_fail.cmake
#
# From add_test, write the ';' of a list argument as $<SEMICOLON> so it reaches the script intact.
cmake_minimum_required(VERSION 3.20)

foreach(var CXX SOURCE EXPECT)
    if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
        message(FATAL_ERROR "check_compile_fail: -D${var}=... is required")
    endif()
endforeach()
if(NOT EXPECT STREQUAL "fail" AND NOT EXPECT STREQUAL "pass")
    message(FATAL_ERROR "check_compile_fail: EXPECT must be 'fail' or 'pass' (got '${EXPECT}')")
endif()
if(EXPECT STREQUAL "fail" AND (NOT DEFINED PATTERN OR PATTERN STREQUAL ""))
    message(FATAL_ERROR "check_compile_fail: EXPECT=fail needs -DPATTERN=<regex> (a bare failure proves nothing)")
endif()
if(NOT EXISTS "${SOURCE}")
    message(FATAL_ERROR "check_compile_fail: source ${SOURCE} does not exist")
endif()

set(include_flags)
foreach(dir IN LISTS INCLUDE_DIRS)
    # The system include directories are searched anyway; naming them with -I would reorder them
    # ahead of the compiler's own C++ headers and break #include_next in libstdc++.
    if(dir STREQUAL "" OR dir STREQUAL "/usr/include" OR dir STREQUAL "/usr/local/include")
        continue()
    endif()
    list(APPEND include_flags "-I${dir}")
endforeach()

execute_process(
    COMMAND "${CXX}" -std=c++20 -fsyntax-only ${FLAGS} ${include_flags} "${SOURCE}"
    RESULT_VARIABLE result
    OUTPUT_VARIABLE out
    ERROR_VARIABLE err)
set(diagnostics "${out}${err}")

if(EXPECT STREQUAL "pass")
    if(NOT result EQUAL 0)
        message(FATAL_ERROR "check_compile_fail: ${SOURCE} should compile but failed (${result}):\n${diagnostics}")
    endif()
    message(STATUS "check_compile_fail: ${SOURCE} compiles, as expected")
    return()
endif()

if(result EQUAL 0)
    message(FATAL_ERROR "check_compile_fail: ${SOURCE} compiled, but it must be rejected")
endif()
foreach(regex IN LISTS PATTERN)
    if(NOT diagnostics MATCHES "${regex}")
        message(FATAL_ERROR "check_compile_fail: ${SOURCE} failed to compile as expected, but the diagnostics "
                            "do not match\n  ${regex}\nThey were:\n${diagnostics}")
    endif()
endforeach()
# ERRORS=<n>: exactly n diagnostics are errors (no cascade after the one that says what is wrong).
if(DEFINED ERRORS AND NOT ERRORS STREQUAL "")
    string(REGEX MATCHALL "error:" found "${diagnostics}")
    list(LENGTH found count)
    if(NOT count EQUAL ERRORS)
        message(FATAL_ERROR "check_compile_fail: ${SOURCE} gave ${count} errors, ${ERRORS} expected:\n${diagnostics}")
    endif()
endif()
message(STATUS "check_compile_fail: ${SOURCE} is rejected with the expected diagnostic")
