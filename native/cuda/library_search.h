#pragma once
// Where the optional NVIDIA libraries (cuBLASLt, cuDNN) are on this machine. They are never linked:
// the CUDA toolkit users have rarely includes them, while PyTorch's pip wheels put them under
// site-packages/nvidia/<name>/lib. Searching only looks at files (no dlopen), so `pia doctor`
// can report them on a machine without a driver; libpia_cuda.so opens what is found.
#include <string>
#include <vector>

namespace pia {

struct LibrarySearch {
  std::string path;                   // the first match, empty when none
  std::vector<std::string> searched;  // the folders looked in, in order
};

// Looks for the first of `sonames` (most preferred first) in: the file named by the environment
// variable `env_override` (if set), LD_LIBRARY_PATH, CUDA_HOME/CUDA_PATH, the usual CUDA and
// system folders, and Python's site-packages/nvidia/<pip_folder>/lib (virtualenv, conda, user and
// system installs, PYTHONPATH).
LibrarySearch find_nvidia_library(const std::vector<std::string>& sonames, const std::string& pip_folder,
                                  const char* env_override);

// The folders find_nvidia_library looks in, in order (exposed for the test).
std::vector<std::string> nvidia_library_folders(const std::string& pip_folder);

// cuBLASLt (libcublasLt.so.13, .12, .11) and cuDNN (libcudnn.so.9, .8), each searched once per process.
const LibrarySearch& cublaslt_search();
const LibrarySearch& cudnn_search();

}  // namespace pia
