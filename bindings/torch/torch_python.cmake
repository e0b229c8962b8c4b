# Included from the top-level CMakeLists.txt (before the CUDA backend is configured) when
# LIGHTHOUSE_TORCH is on: finds the Python whose torch the extension is built against, and
# defaults the CUDA backend's cuDNN to the one that torch loads (its pip wheel), so that one
# process never holds two different cuDNN libraries.
#
# Sets LIGHTHOUSE_TORCH_PYTHON (cache), LIGHTHOUSE_TORCH_PREFIX (torch's CMake prefix) and, when
# the caller left it empty and torch ships cuDNN, LIGHTHOUSE_CUDNN_ROOT.
set(LIGHTHOUSE_TORCH_PYTHON "" CACHE FILEPATH
    "Python interpreter whose torch the extension is built against (default: the Python3 found)")
if(NOT LIGHTHOUSE_TORCH_PYTHON)
  # scikit-build-core passes the building interpreter as Python3_EXECUTABLE.
  find_package(Python3 REQUIRED COMPONENTS Interpreter)
  set(LIGHTHOUSE_TORCH_PYTHON "${Python3_EXECUTABLE}" CACHE FILEPATH "" FORCE)
endif()
execute_process(
  COMMAND "${LIGHTHOUSE_TORCH_PYTHON}" -c
          "import os, torch; print(torch.utils.cmake_prefix_path); print(os.path.dirname(os.path.dirname(torch.__file__)))"
  OUTPUT_VARIABLE _torch_paths OUTPUT_STRIP_TRAILING_WHITESPACE
  ERROR_VARIABLE _torch_error RESULT_VARIABLE _torch_status)
if(NOT _torch_status EQUAL 0)
  message(FATAL_ERROR "LIGHTHOUSE_TORCH: '${LIGHTHOUSE_TORCH_PYTHON}' cannot import torch "
    "(${_torch_error}). Set -DLIGHTHOUSE_TORCH_PYTHON=<python with torch>, or configure without "
    "-DLIGHTHOUSE_TORCH=ON.")
endif()
string(REPLACE "\n" ";" _torch_paths "${_torch_paths}")
list(GET _torch_paths 0 LIGHTHOUSE_TORCH_PREFIX)
list(GET _torch_paths 1 _torch_site_packages)

if(NOT LIGHTHOUSE_CUDNN_ROOT AND EXISTS "${_torch_site_packages}/nvidia/cudnn/include/cudnn.h")
  set(LIGHTHOUSE_CUDNN_ROOT "${_torch_site_packages}/nvidia/cudnn")
  message(STATUS "cuDNN for the CUDA backend: torch's wheel, ${LIGHTHOUSE_CUDNN_ROOT}")
endif()
