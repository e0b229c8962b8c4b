# `cmake --install <build> --prefix P`: the public headers, the static `lighthouse` library with
# an exported CMake package (find_package(lighthouse CONFIG) -> lighthouse::lighthouse) and the
# `lighthouse` command-line tool. examples/consumer is a project that uses the installed package;
# scripts/test-install installs into build/install and builds and runs it.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(LIGHTHOUSE_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/lighthouse")

# Every public header, whatever include/lighthouse/ holds.
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/lighthouse"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}" FILES_MATCHING PATTERN "*.hpp")

set_target_properties(lighthouse PROPERTIES EXPORT_NAME lighthouse)
install(TARGETS lighthouse lighthouse_math EXPORT lighthouseTargets
        ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
        LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
        INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(EXPORT lighthouseTargets NAMESPACE lighthouse:: DESTINATION "${LIGHTHOUSE_CMAKE_INSTALL_DIR}")

if(TARGET lighthouse_cli)
  # The installed tool keeps finding libraries outside the loader's paths (a pip wheel's cuDNN)
  # where the build found them.
  set_target_properties(lighthouse_cli PROPERTIES INSTALL_RPATH_USE_LINK_PATH TRUE)
  install(TARGETS lighthouse_cli RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")
endif()

# What the config file must find again on the consumer's side, as the build found it.
if(LIGHTHOUSE_HAVE_OPENBLAS)
  get_filename_component(LIGHTHOUSE_OPENBLAS_HINT "${OPENBLAS_LIBRARY}" DIRECTORY)
endif()
if(LIGHTHOUSE_WITH_CUDA)
  get_filename_component(LIGHTHOUSE_CUDNN_HINT "${LIGHTHOUSE_CUDNN_LIBRARY}" DIRECTORY)
endif()
configure_package_config_file("${CMAKE_CURRENT_LIST_DIR}/lighthouseConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/lighthouseConfig.cmake" INSTALL_DESTINATION "${LIGHTHOUSE_CMAKE_INSTALL_DIR}")
write_basic_package_version_file("${PROJECT_BINARY_DIR}/lighthouseConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}" COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/lighthouseConfig.cmake"
              "${PROJECT_BINARY_DIR}/lighthouseConfigVersion.cmake"
        DESTINATION "${LIGHTHOUSE_CMAKE_INSTALL_DIR}")
