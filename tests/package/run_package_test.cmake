# Packaging test driver, run as a script:
#   cmake -DPARDL_SOURCE_DIR=<src> -DWORK_DIR=<scratch dir> -DMODE=install|subdir
#         [-DGENERATOR=<generator>] [-DMAKE_PROGRAM=<path>] [-DCXX_COMPILER=<path>]
#         [-DBUILD_TYPE=Release] [-DCOMPONENTS=openmp,mpi] -P run_package_test.cmake
# install: configure pardl alone, install it to WORK_DIR/prefix, build and run the find_package
#          consumer against that prefix, and check `pkg-config --cflags pardl` (then build
#          and run the consumer with `pkg-config --cflags --libs pardl`'s flags alone).
# subdir:  build and run a project that pulls pardl in with add_subdirectory, and check that
#          pardl's own tests/examples/benchmarks and install rules stay out of it.
cmake_minimum_required(VERSION 3.24)

foreach(var PARDL_SOURCE_DIR WORK_DIR MODE)
    if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
        message(FATAL_ERROR "run_package_test.cmake: -D${var}=... is required")
    endif()
endforeach()
if(NOT MODE MATCHES "^(install|subdir)$")
    message(FATAL_ERROR "run_package_test.cmake: MODE must be install or subdir, not '${MODE}'")
endif()
if(NOT BUILD_TYPE)
    set(BUILD_TYPE Release)
endif()

# Same toolchain as the caller.
set(common_args "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
if(GENERATOR)
    list(APPEND common_args -G "${GENERATOR}")
endif()
if(MAKE_PROGRAM)
    list(APPEND common_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(CXX_COMPILER)
    list(APPEND common_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()

# run(<step name> <command...>): run a command, stop the test if it fails.
function(run step)
    message(STATUS "[${MODE}] ${step}")
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
        message("${out}")
        message(FATAL_ERROR "[${MODE}] step '${step}' failed (${rc}): ${ARGN}")
    endif()
    set(last_output "${out}" PARENT_SCOPE)
endfunction()

set(here "${CMAKE_CURRENT_LIST_DIR}")
set(prefix "${WORK_DIR}/prefix")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(exe_suffix "")
if(CMAKE_HOST_WIN32)
    set(exe_suffix ".exe")
endif()

if(MODE STREQUAL "install")
    run("configure pardl" "${CMAKE_COMMAND}" -S "${PARDL_SOURCE_DIR}" -B "${WORK_DIR}/build" ${common_args}
        -DPARDL_BUILD_TESTS=OFF -DPARDL_BUILD_EXAMPLES=OFF -DPARDL_BUILD_BENCHMARKS=OFF
        "-DCMAKE_INSTALL_PREFIX=${prefix}")
    run("build pardl" "${CMAKE_COMMAND}" --build "${WORK_DIR}/build" --config ${BUILD_TYPE})
    run("install pardl" "${CMAKE_COMMAND}" --install "${WORK_DIR}/build" --config ${BUILD_TYPE})

    foreach(f include/pardl/tensor/shape.hpp share/cmake/pardl/pardlConfig.cmake
              share/cmake/pardl/pardlConfigVersion.cmake share/cmake/pardl/pardlTargets.cmake
              share/pkgconfig/pardl.pc)
        if(NOT EXISTS "${prefix}/${f}")
            message(FATAL_ERROR "[install] ${f} was not installed into ${prefix}")
        endif()
    endforeach()

    run("configure consumer" "${CMAKE_COMMAND}" -S "${here}/consumer" -B "${WORK_DIR}/consumer" ${common_args}
        "-DCMAKE_PREFIX_PATH=${prefix}" "-DPARDL_EXPECTED_PREFIX=${prefix}"
        "-DPARDL_CONSUMER_COMPONENTS=${COMPONENTS}")
    run("build consumer" "${CMAKE_COMMAND}" --build "${WORK_DIR}/consumer" --config ${BUILD_TYPE})
    # Multi-config generators put the program in a per-configuration folder.
    set(exe "${WORK_DIR}/consumer/pardl_consumer${exe_suffix}")
    if(NOT EXISTS "${exe}")
        set(exe "${WORK_DIR}/consumer/${BUILD_TYPE}/pardl_consumer${exe_suffix}")
    endif()
    run("run consumer" "${exe}")
    message(STATUS "${last_output}")

    find_program(PKG_CONFIG_EXECUTABLE NAMES pkg-config pkgconf)
    if(PKG_CONFIG_EXECUTABLE)
        set(pc_path "${prefix}/share/pkgconfig")
        if(DEFINED ENV{PKG_CONFIG_PATH} AND NOT "$ENV{PKG_CONFIG_PATH}" STREQUAL "")
            string(APPEND pc_path ":$ENV{PKG_CONFIG_PATH}")
        endif()
        run("pkg-config --cflags pardl" "${CMAKE_COMMAND}" -E env "PKG_CONFIG_PATH=${pc_path}"
            "${PKG_CONFIG_EXECUTABLE}" --cflags pardl)
        string(STRIP "${last_output}" cflags)
        message(STATUS "pkg-config --cflags pardl: ${cflags}")
        file(REAL_PATH "${prefix}/include" real_include)
        if(NOT cflags MATCHES "-std=c\\+\\+20")
            message(FATAL_ERROR "[install] pkg-config cflags lack -std=c++20: ${cflags}")
        endif()
        # pkg-config may report the include dir through ${pcfiledir}, so compare real paths.
        string(REGEX MATCH "-I([^ ]*/include)( |$)" _ "${cflags}")
        if(NOT CMAKE_MATCH_1)
            message(FATAL_ERROR "[install] pkg-config cflags lack an include directory: ${cflags}")
        endif()
        file(REAL_PATH "${CMAKE_MATCH_1}" pc_include)
        if(NOT pc_include STREQUAL real_include)
            message(FATAL_ERROR "[install] pkg-config include dir ${pc_include} is not ${real_include}")
        endif()
        # The consumer built by hand from what pkg-config says, as a Makefile would: it saves a
        # checkpoint, so it links only if the libs bring zlib.
        run("pkg-config --cflags --libs pardl" "${CMAKE_COMMAND}" -E env "PKG_CONFIG_PATH=${pc_path}"
            "${PKG_CONFIG_EXECUTABLE}" --cflags --libs pardl)
        string(STRIP "${last_output}" pc_flags)
        message(STATUS "pkg-config --cflags --libs pardl: ${pc_flags}")
        separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
        set(cxx "${CXX_COMPILER}")
        if(NOT cxx)
            set(cxx c++)
        endif()
        set(pc_exe "${WORK_DIR}/pardl_consumer_pkgconfig${exe_suffix}")
        run("build consumer with pkg-config's flags" "${cxx}" -O1 "${here}/consumer/main.cpp" ${pc_flags}
            -o "${pc_exe}")
        run("run consumer built with pkg-config's flags" "${pc_exe}")
    else()
        message(STATUS "[install] pkg-config not found: skipping the pardl.pc check")
    endif()
else()
    # PARDL_BUILD_TESTS=ON on purpose: pardl must ignore it when it is not the top-level project.
    run("configure subdir project" "${CMAKE_COMMAND}" -S "${here}/subdir" -B "${WORK_DIR}/build" ${common_args}
        "-DPARDL_SOURCE_DIR=${PARDL_SOURCE_DIR}" -DPARDL_BUILD_TESTS=ON -DPARDL_BUILD_EXAMPLES=ON
        -DPARDL_BUILD_BENCHMARKS=ON "-DCMAKE_INSTALL_PREFIX=${prefix}")
    run("build subdir project" "${CMAKE_COMMAND}" --build "${WORK_DIR}/build" --config ${BUILD_TYPE})
    set(exe "${WORK_DIR}/build/pardl_consumer${exe_suffix}")
    if(NOT EXISTS "${exe}")
        set(exe "${WORK_DIR}/build/${BUILD_TYPE}/pardl_consumer${exe_suffix}")
    endif()
    run("run subdir consumer" "${exe}")
    message(STATUS "${last_output}")
    if(EXISTS "${WORK_DIR}/build/pardl-build/CTestTestfile.cmake")
        message(FATAL_ERROR "[subdir] pardl registered tests although it is not the top-level project")
    endif()
    # A vendored pardl must not install itself into the parent's prefix (PARDL_INSTALL is off).
    run("install subdir project" "${CMAKE_COMMAND}" --install "${WORK_DIR}/build" --config ${BUILD_TYPE})
    if(EXISTS "${prefix}/include/pardl" OR EXISTS "${prefix}/share/cmake/pardl")
        message(FATAL_ERROR "[subdir] a vendored pardl installed itself into ${prefix}")
    endif()
endif()

message(STATUS "[${MODE}] package test passed")
