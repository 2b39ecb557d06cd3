# Resolves llama.cpp (libllama, ggml and llama.cpp's `common` library) for kvault.
#
# Order, first match wins:
#   1. an installed llama.cpp found by find_package(llama) that also ships `common`
#      (KVAULT_USE_SYSTEM_LLAMA=ON, the default) and matches the pinned version, when a source
#      tree (KVAULT_LLAMA_SOURCE_DIR) provides the SHA-256 it vendors but does not install;
#   2. a source tree given with -DKVAULT_LLAMA_SOURCE_DIR=... (what `make deps` provides here);
#   3. FetchContent of the upstream repository at the pinned tag (needs internet).
# Cases 2 and 3 build llama.cpp inside kvault's build tree; ccache (enabled in the top-level
# CMakeLists) makes that cheap in any later clone on the same machine.
#
# Defines the targets kvault links against: kvault::llama (libllama + ggml) and
# kvault::llama_common (common + the nlohmann-json and cpp-httplib copies it uses).

# The pin lives in scripts/deps.sh (LLAMA_TAG=..., next to the npm tarball that carries the source).
file(STRINGS "${CMAKE_CURRENT_LIST_DIR}/../scripts/deps.sh" _kvault_pin REGEX "^LLAMA_TAG=")
string(REGEX REPLACE "^LLAMA_TAG=" "" _kvault_pin "${_kvault_pin}")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${CMAKE_CURRENT_LIST_DIR}/../scripts/deps.sh")
if(NOT _kvault_pin MATCHES "^v[0-9]+\\.[0-9]+\\.[0-9]+$")
  message(FATAL_ERROR "kvault: cannot read LLAMA_TAG from scripts/deps.sh (got '${_kvault_pin}')")
endif()
set(KVAULT_LLAMA_TAG "${_kvault_pin}" CACHE STRING "pinned llama.cpp release")
string(REGEX REPLACE "^v" "" KVAULT_LLAMA_VERSION "${_kvault_pin}")
set(KVAULT_LLAMA_SOURCE_DIR "" CACHE PATH "llama.cpp source tree to build (see make deps)")
option(KVAULT_USE_SYSTEM_LLAMA "use an installed llama.cpp when one with `common` is found" ON)
option(KVAULT_LLAMA_TOOLS "also define llama.cpp's llama-bench, llama-batched-bench and llama-server targets" OFF)

set(_kvault_llama_found OFF)

if(KVAULT_USE_SYSTEM_LLAMA)
  find_package(llama ${KVAULT_LLAMA_VERSION} EXACT CONFIG QUIET)
  find_library(KVAULT_SYSTEM_LLAMA_COMMON NAMES llama-common common)
  find_path(KVAULT_SYSTEM_LLAMA_COMMON_INCLUDE chat.h PATH_SUFFIXES llama-common llama/common)
  # An installed llama.cpp does not ship its vendored SHA-256 (vendor/hash, for the HMAC tenant
  # ids): kvault compiles that one C file itself from a llama.cpp source tree when one is given,
  # else it builds llama.cpp from source (below) instead of the installed one.
  set(_kvault_sha256_src "${KVAULT_LLAMA_SOURCE_DIR}/vendor/hash/sha256/sha256.c")
  if(llama_FOUND AND KVAULT_SYSTEM_LLAMA_COMMON AND KVAULT_SYSTEM_LLAMA_COMMON_INCLUDE
     AND NOT (KVAULT_LLAMA_SOURCE_DIR AND EXISTS "${_kvault_sha256_src}"))
    message(STATUS "kvault: installed llama.cpp ${llama_VERSION} found, but not the SHA-256 source it vendors "
                   "(vendor/hash, needed for tenant ids; set KVAULT_LLAMA_SOURCE_DIR): building llama.cpp from "
                   "source instead")
  elseif(llama_FOUND AND KVAULT_SYSTEM_LLAMA_COMMON AND KVAULT_SYSTEM_LLAMA_COMMON_INCLUDE)
    message(STATUS "kvault: using installed llama.cpp ${llama_VERSION} (SHA-256 from ${_kvault_sha256_src})")
    add_library(kvault_sha256_src STATIC "${_kvault_sha256_src}")
    set_target_properties(kvault_sha256_src PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_compile_options(kvault_sha256_src PRIVATE -w)  # third-party code, as llama.cpp builds it
    # sha256.c includes "rotate-bits/rotate-bits.h"; kvault includes "hash/sha256/sha256.h".
    target_include_directories(kvault_sha256_src PRIVATE "${KVAULT_LLAMA_SOURCE_DIR}/vendor/hash"
                               PUBLIC "${KVAULT_LLAMA_SOURCE_DIR}/vendor")
    add_library(kvault_llama INTERFACE)
    target_link_libraries(kvault_llama INTERFACE llama)
    add_library(kvault_llama_common INTERFACE)
    target_link_libraries(kvault_llama_common INTERFACE ${KVAULT_SYSTEM_LLAMA_COMMON} llama)
    target_include_directories(kvault_llama_common INTERFACE ${KVAULT_SYSTEM_LLAMA_COMMON_INCLUDE})
    set(KVAULT_LLAMA_VOCAB_DIR "" CACHE PATH "directory with ggml-vocab-*.gguf")
    set(_kvault_llama_found ON)
  elseif(llama_FOUND)
    message(STATUS "kvault: installed llama.cpp lacks the `common` library; building from source")
  endif()
endif()

if(NOT _kvault_llama_found)
  # Library-only build of llama.cpp; common is needed for chat templates and tool-call parsing.
  set(LLAMA_BUILD_COMMON ON CACHE BOOL "" FORCE)
  set(LLAMA_BUILD_TESTS OFF CACHE BOOL "" FORCE)
  set(LLAMA_BUILD_EXAMPLES OFF CACHE BOOL "" FORCE)
  # KVAULT_LLAMA_TOOLS: llama.cpp's reference programs (llama-bench, llama-batched-bench,
  # llama-server) as targets of this tree too, linked to the same ggml: a CUDA build compiles the
  # CUDA backend once for both (scripts/gpu-check.sh). Built only when asked for by name.
  set(LLAMA_BUILD_TOOLS ${KVAULT_LLAMA_TOOLS} CACHE BOOL "" FORCE)
  set(LLAMA_BUILD_SERVER ${KVAULT_LLAMA_TOOLS} CACHE BOOL "" FORCE)
  set(LLAMA_BUILD_APP OFF CACHE BOOL "" FORCE)
  set(LLAMA_BUILD_UI OFF CACHE BOOL "" FORCE)
  set(LLAMA_USE_PREBUILT_UI OFF CACHE BOOL "" FORCE)
  set(LLAMA_OPENSSL OFF CACHE BOOL "" FORCE)
  set(LLAMA_SUBPROCESS OFF CACHE BOOL "" FORCE)
  set(LLAMA_ALL_WARNINGS OFF CACHE BOOL "" FORCE)
  set(BUILD_SHARED_LIBS OFF CACHE BOOL "" FORCE)
  if(KVAULT_CUDA)
    set(GGML_CUDA ON CACHE BOOL "" FORCE)
    if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
      set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc CACHE FILEPATH "" FORCE)
    endif()
    # ggml defaults to the GPU in this machine ("native"), which fails where there is none (a
    # build machine): then build for the common data-centre and desktop architectures.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      execute_process(COMMAND nvidia-smi -L RESULT_VARIABLE _kvault_smi OUTPUT_QUIET ERROR_QUIET)
      if(NOT _kvault_smi EQUAL 0)
        set(CMAKE_CUDA_ARCHITECTURES "75;80;86;89;90" CACHE STRING "" FORCE)
        message(STATUS "kvault: no GPU visible; CUDA architectures ${CMAKE_CUDA_ARCHITECTURES}")
      endif()
    endif()
  endif()

  if(KVAULT_LLAMA_SOURCE_DIR)
    if(NOT EXISTS "${KVAULT_LLAMA_SOURCE_DIR}/include/llama.h")
      message(FATAL_ERROR "KVAULT_LLAMA_SOURCE_DIR=${KVAULT_LLAMA_SOURCE_DIR} is not a llama.cpp tree "
                          "(run `make deps`)")
    endif()
    message(STATUS "kvault: building llama.cpp from ${KVAULT_LLAMA_SOURCE_DIR}")
    add_subdirectory(${KVAULT_LLAMA_SOURCE_DIR} ${CMAKE_BINARY_DIR}/llama.cpp EXCLUDE_FROM_ALL)
    set(_kvault_llama_src ${KVAULT_LLAMA_SOURCE_DIR})
  else()
    message(STATUS "kvault: fetching llama.cpp ${KVAULT_LLAMA_TAG} (set KVAULT_LLAMA_SOURCE_DIR to avoid)")
    include(FetchContent)
    FetchContent_Declare(llama_cpp
      GIT_REPOSITORY https://github.com/ggml-org/llama.cpp.git
      GIT_TAG ${KVAULT_LLAMA_TAG}
      GIT_SHALLOW TRUE)
    FetchContent_GetProperties(llama_cpp)
    if(NOT llama_cpp_POPULATED)
      FetchContent_Populate(llama_cpp)
      add_subdirectory(${llama_cpp_SOURCE_DIR} ${llama_cpp_BINARY_DIR} EXCLUDE_FROM_ALL)
    endif()
    set(_kvault_llama_src ${llama_cpp_SOURCE_DIR})
  endif()

  add_library(kvault_llama INTERFACE)
  target_link_libraries(kvault_llama INTERFACE llama ggml)
  add_library(kvault_llama_common INTERFACE)
  target_link_libraries(kvault_llama_common INTERFACE llama-common cpp-httplib llama ggml)
  # common's headers include "httplib.h" and <nlohmann/json.hpp> from llama.cpp's vendor/.
  target_include_directories(kvault_llama_common SYSTEM INTERFACE
    ${_kvault_llama_src}/common ${_kvault_llama_src}/vendor ${_kvault_llama_src}/vendor/cpp-httplib)
  set(KVAULT_LLAMA_VOCAB_DIR "${_kvault_llama_src}/models" CACHE PATH "directory with ggml-vocab-*.gguf" FORCE)
endif()

add_library(kvault::llama ALIAS kvault_llama)
add_library(kvault::llama_common ALIAS kvault_llama_common)

# SHA-256, for the HMAC-SHA256 tenant ids of API keys (src/server/hmac): the copy llama.cpp
# vendors (vendor/hash, public domain), built by llama.cpp as vendor::hash in a source build, or
# compiled here from the source tree next to an installed llama.cpp (above).
add_library(kvault_sha256 INTERFACE)
if(TARGET kvault_sha256_src)
  target_link_libraries(kvault_sha256 INTERFACE kvault_sha256_src)
elseif(TARGET vendor::hash)
  target_link_libraries(kvault_sha256 INTERFACE vendor::hash)
else()
  message(FATAL_ERROR "kvault: llama.cpp's vendored SHA-256 (vendor::hash) is missing from ${_kvault_llama_src}")
endif()
add_library(kvault::sha256 ALIAS kvault_sha256)
