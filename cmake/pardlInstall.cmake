# Install rules for pardl: headers, exported targets (one export set per component, so a consumer
# only needs OpenMP or MPI when it asks for that component), a package config, a version file and
# a pkg-config file. Everything goes under datadir: the library is header-only, so arch-independent.

include(CMakePackageConfigHelpers)

# On by default only when pardl is the top-level project, so that add_subdirectory(pardl) does not
# leak pardl's headers and config files into the parent project's install tree.
option(PARDL_INSTALL "Generate pardl's install rules" ${PROJECT_IS_TOP_LEVEL})
if(NOT PARDL_INSTALL)
    return()
endif()

set(PARDL_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/pardl"
    CACHE STRING "Install directory of pardl's CMake package files, relative to the prefix")
set(PARDL_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_DATADIR}/pkgconfig"
    CACHE STRING "Install directory of pardl.pc, relative to the prefix")
mark_as_advanced(PARDL_INSTALL_CMAKEDIR PARDL_INSTALL_PKGCONFIGDIR)

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/pardl"
    DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
    COMPONENT pardl_development)

# Core target.
install(TARGETS pardl EXPORT pardlTargets)
install(EXPORT pardlTargets
    NAMESPACE pardl::
    DESTINATION "${PARDL_INSTALL_CMAKEDIR}"
    COMPONENT pardl_development)

# Optional components: pardl-<name>Targets.cmake, included by pardlConfig.cmake on request.
set(PARDL_INSTALLED_COMPONENTS "")
foreach(_pardl_comp IN ITEMS openmp mpi)
    if(TARGET pardl_${_pardl_comp})
        install(TARGETS pardl_${_pardl_comp} EXPORT pardl-${_pardl_comp}Targets)
        install(EXPORT pardl-${_pardl_comp}Targets
            NAMESPACE pardl::
            DESTINATION "${PARDL_INSTALL_CMAKEDIR}"
            COMPONENT pardl_development)
        list(APPEND PARDL_INSTALLED_COMPONENTS ${_pardl_comp})
    endif()
endforeach()
unset(_pardl_comp)

# Recorded so a consumer re-finds the same MPI implementation pardl was configured against.
set(PARDL_MPI_CXX_COMPILER_HINT "")
if(TARGET pardl_mpi AND MPI_CXX_COMPILER)
    set(PARDL_MPI_CXX_COMPILER_HINT "${MPI_CXX_COMPILER}")
endif()

configure_package_config_file(
    "${PROJECT_SOURCE_DIR}/cmake/pardlConfig.cmake.in"
    "${PROJECT_BINARY_DIR}/pardlConfig.cmake"
    INSTALL_DESTINATION "${PARDL_INSTALL_CMAKEDIR}")
write_basic_package_version_file(
    "${PROJECT_BINARY_DIR}/pardlConfigVersion.cmake"
    VERSION "${PROJECT_VERSION}"
    COMPATIBILITY SameMinorVersion
    ARCH_INDEPENDENT)
install(FILES
    "${PROJECT_BINARY_DIR}/pardlConfig.cmake"
    "${PROJECT_BINARY_DIR}/pardlConfigVersion.cmake"
    DESTINATION "${PARDL_INSTALL_CMAKEDIR}"
    COMPONENT pardl_development)

# pkg-config: relocatable through ${pcfiledir} when the install directories are relative.
if(IS_ABSOLUTE "${PARDL_INSTALL_PKGCONFIGDIR}")
    set(PARDL_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
    file(RELATIVE_PATH _pardl_pc_up "/prefix/${PARDL_INSTALL_PKGCONFIGDIR}" "/prefix")
    string(REGEX REPLACE "/$" "" _pardl_pc_up "${_pardl_pc_up}")
    set(PARDL_PC_PREFIX "\${pcfiledir}/${_pardl_pc_up}")
    unset(_pardl_pc_up)
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
    set(PARDL_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
    set(PARDL_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
# Only ask pkg-config for modules that this system actually provides a .pc file for.
find_package(PkgConfig QUIET)
set(PARDL_PC_REQUIRES "")
foreach(_pardl_pc_mod IN ITEMS xtl xtensor xsimd zlib)
    set(_pardl_pc_have FALSE)
    if(PKG_CONFIG_FOUND)
        execute_process(COMMAND "${PKG_CONFIG_EXECUTABLE}" --exists ${_pardl_pc_mod}
            RESULT_VARIABLE _pardl_pc_rc OUTPUT_QUIET ERROR_QUIET)
        if(_pardl_pc_rc EQUAL 0)
            set(_pardl_pc_have TRUE)
        endif()
    endif()
    if(_pardl_pc_have OR _pardl_pc_mod STREQUAL "zlib")
        list(APPEND PARDL_PC_REQUIRES ${_pardl_pc_mod})
    endif()
endforeach()
list(JOIN PARDL_PC_REQUIRES ", " PARDL_PC_REQUIRES)
unset(_pardl_pc_mod)
unset(_pardl_pc_have)
unset(_pardl_pc_rc)
configure_file("${PROJECT_SOURCE_DIR}/cmake/pardl.pc.in" "${PROJECT_BINARY_DIR}/pardl.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/pardl.pc"
    DESTINATION "${PARDL_INSTALL_PKGCONFIGDIR}"
    COMPONENT pardl_development)
