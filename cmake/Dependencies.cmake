# Third-party dependencies: Debian packages, plus ONNX Runtime as scripts/setup.sh provides it.
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(simdjson REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
pkg_check_modules(SYSTEMD IMPORTED_TARGET libsystemd)
# The TensorFlow Lite importer reads flatbuffers and writes ONNX protobufs.
find_package(FlatBuffers CONFIG REQUIRED)
find_package(ONNX CONFIG REQUIRED)

# scripts/setup.sh writes the location of what it fetched here.
set(OUTPOST_DEPS_FILE "" CACHE FILEPATH "deps.cmake written by scripts/setup.sh")
if(OUTPOST_DEPS_FILE)
  include(${OUTPOST_DEPS_FILE})
endif()

if(NOT OUTPOST_ORT_ROOT)
  find_package(onnxruntime CONFIG QUIET)
endif()
if(TARGET onnxruntime::onnxruntime)
  message(STATUS "ONNX Runtime: system package ${onnxruntime_VERSION}")
else()
  if(NOT OUTPOST_ORT_ROOT OR NOT EXISTS "${OUTPOST_ORT_ROOT}/include/onnxruntime/onnxruntime_cxx_api.h")
    message(FATAL_ERROR "ONNX Runtime not found: run scripts/setup.sh and pass -DOUTPOST_DEPS_FILE=...")
  endif()
  message(STATUS "ONNX Runtime: ${OUTPOST_ORT_ROOT}")
  add_library(onnxruntime::onnxruntime SHARED IMPORTED GLOBAL)
  set_target_properties(onnxruntime::onnxruntime PROPERTIES
    IMPORTED_LOCATION "${CMAKE_BINARY_DIR}/lib/libonnxruntime.so.1"
    IMPORTED_SONAME "libonnxruntime.so.1"
    INTERFACE_INCLUDE_DIRECTORIES "${OUTPOST_ORT_ROOT}/include/onnxruntime")
  # Ship exactly the library we link against: ORT's symbols are versioned per release.
  file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/lib)
  file(COPY_FILE "${OUTPOST_ORT_ROOT}/lib/libonnxruntime.so.1" "${CMAKE_BINARY_DIR}/lib/libonnxruntime.so.1"
       ONLY_IF_DIFFERENT)
endif()
