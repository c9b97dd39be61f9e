#include "library_search.h"

#include <algorithm>
#include <cstdlib>
#include <set>

#include <glob.h>
#include <sys/stat.h>

namespace pia {

namespace {

bool is_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<std::string> split_paths(const char* v) {
  std::vector<std::string> out;
  if (!v) return out;
  std::string s = v;
  size_t start = 0;
  while (start <= s.size()) {
    size_t colon = s.find(':', start);
    if (colon == std::string::npos) colon = s.size();
    if (colon > start) out.push_back(s.substr(start, colon - start));
    start = colon + 1;
  }
  return out;
}

std::vector<std::string> glob_dirs(const std::string& pattern) {
  std::vector<std::string> out;
  glob_t g{};
  if (::glob(pattern.c_str(), GLOB_NOSORT, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.push_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  std::sort(out.rbegin(), out.rend());  // newest python3.N first (lexicographic is good enough)
  return out;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

std::vector<std::string> nvidia_library_folders(const std::string& pip_folder) {
  std::vector<std::string> dirs;
  for (const std::string& d : split_paths(std::getenv("LD_LIBRARY_PATH"))) dirs.push_back(d);
  for (const char* var : {"CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"}) {
    const std::string root = env(var);
    if (!root.empty()) {
      dirs.push_back(root + "/lib64");
      dirs.push_back(root + "/lib");
    }
  }
  for (const char* d : {"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib",
                        "/usr/local/cuda/targets/sbsa-linux/lib"}) {
    dirs.push_back(d);
  }
  for (const std::string& d : glob_dirs("/usr/local/cuda-*/lib64")) dirs.push_back(d);
  for (const char* d : {"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"}) {
    dirs.push_back(d);
  }
  // pip wheels (nvidia-cublas-cu12, nvidia-cudnn-cu12, ...: what PyTorch installs).
  const std::string sub = "/nvidia/" + pip_folder + "/lib";
  std::vector<std::string> roots;
  for (const std::string& p : split_paths(std::getenv("PYTHONPATH"))) roots.push_back(p);
  for (const char* var : {"VIRTUAL_ENV", "CONDA_PREFIX"}) {
    const std::string prefix = env(var);
    if (!prefix.empty()) {
      for (const std::string& sp : glob_dirs(prefix + "/lib/python3*/site-packages")) roots.push_back(sp);
    }
  }
  const std::string home = env("HOME");
  if (!home.empty()) {
    for (const std::string& sp : glob_dirs(home + "/.local/lib/python3*/site-packages")) roots.push_back(sp);
  }
  for (const char* pat : {"/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages",
                          "/usr/lib/python3*/dist-packages", "/usr/lib/python3*/site-packages",
                          "/opt/conda/lib/python3*/site-packages"}) {
    for (const std::string& sp : glob_dirs(pat)) roots.push_back(sp);
  }
  for (const std::string& r : roots) dirs.push_back(r + sub);
  // Drop repeats, keeping the first position.
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const std::string& d : dirs) {
    if (seen.insert(d).second) out.push_back(d);
  }
  return out;
}

LibrarySearch find_nvidia_library(const std::vector<std::string>& sonames, const std::string& pip_folder,
                                  const char* env_override) {
  LibrarySearch r;
  if (env_override) {
    const std::string forced = env(env_override);
    if (!forced.empty()) {
      r.searched.push_back(forced);
      if (is_file(forced)) r.path = forced;
      return r;  // an explicit choice is never second-guessed
    }
  }
  const std::vector<std::string> dirs = nvidia_library_folders(pip_folder);
  for (const std::string& d : dirs) {
    if (is_dir(d)) r.searched.push_back(d);
  }
  // Newest soname first across every folder: a cuBLASLt 13 anywhere beats a 12 earlier on the path.
  for (const std::string& so : sonames) {
    for (const std::string& d : r.searched) {
      if (is_file(d + "/" + so)) {
        r.path = d + "/" + so;
        return r;
      }
    }
  }
  return r;
}

const LibrarySearch& cublaslt_search() {
  static const LibrarySearch s =
      find_nvidia_library({"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so"}, "cublas",
                          "PIA_CUBLASLT_LIBRARY");
  return s;
}

const LibrarySearch& cudnn_search() {
  static const LibrarySearch s =
      find_nvidia_library({"libcudnn.so.9", "libcudnn.so.8", "libcudnn.so"}, "cudnn", "PIA_CUDNN_LIBRARY");
  return s;
}

}  // namespace pia
