// Where the optional NVIDIA libraries are looked for (native/cuda/library_search.h): runs on every
// machine, with fake library files in a temporary folder (finding is by file, never dlopen).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>

#include <sys/stat.h>
#include <unistd.h>

#include "cuda/cuda_loader.h"
#include "cuda/library_search.h"
#include "harness.h"

using namespace pia;

namespace {

std::string temp_dir(const char* tag) {
  std::string t = std::string("/tmp/pia_libsearch_") + tag + "_XXXXXX";
  char* d = ::mkdtemp(t.data());
  EXPECT(d != nullptr);
  return d;
}

void touch(const std::string& path) { std::ofstream(path) << "not a library"; }

// Sets an environment variable for the life of the object.
struct EnvVar {
  std::string name;
  std::string old;
  bool had = false;
  EnvVar(const char* n, const std::string& v) : name(n) {
    if (const char* o = std::getenv(n)) {
      had = true;
      old = o;
    }
    ::setenv(n, v.c_str(), 1);
  }
  ~EnvVar() {
    if (had) ::setenv(name.c_str(), old.c_str(), 1);
    else ::unsetenv(name.c_str());
  }
};

}  // namespace

PIA_TEST(library_search_ld_library_path_and_soname_order) {
  const std::string a = temp_dir("a"), b = temp_dir("b");
  touch(a + "/libcublasLt.so.12");
  touch(b + "/libcublasLt.so.13");
  EnvVar ld("LD_LIBRARY_PATH", a + ":" + b);
  const LibrarySearch s = find_nvidia_library({"libcublasLt.so.13", "libcublasLt.so.12"}, "cublas", nullptr);
  // The newer soname wins even though its folder comes later on the path.
  EXPECT(s.path == b + "/libcublasLt.so.13");
  EXPECT(s.searched.size() >= 2 && s.searched[0] == a && s.searched[1] == b);
  const LibrarySearch old = find_nvidia_library({"libcublasLt.so.11", "libcublasLt.so.12"}, "cublas", nullptr);
  EXPECT(old.path == a + "/libcublasLt.so.12");
  const LibrarySearch none = find_nvidia_library({"libnothing_here.so.1"}, "cublas", nullptr);
  EXPECT(none.path.empty());
}

PIA_TEST(library_search_python_site_packages) {
  const std::string venv = temp_dir("venv");
  const std::string lib = venv + "/lib/python3.11/site-packages/nvidia/cublas/lib";
  for (const std::string& d : {venv + "/lib", venv + "/lib/python3.11", venv + "/lib/python3.11/site-packages",
                               venv + "/lib/python3.11/site-packages/nvidia",
                               venv + "/lib/python3.11/site-packages/nvidia/cublas", lib}) {
    ::mkdir(d.c_str(), 0755);
  }
  touch(lib + "/libcublasLt.so.12");
  EnvVar v("VIRTUAL_ENV", venv);
  EnvVar ld("LD_LIBRARY_PATH", "");
  bool listed = false;
  for (const std::string& d : nvidia_library_folders("cublas")) listed = listed || d == lib;
  EXPECT(listed);
  const LibrarySearch s = find_nvidia_library({"libcublasLt.so.12"}, "cublas", nullptr);
  // A system CUDA install may hold one too; either way a file was found, and ours when no other is.
  EXPECT(!s.path.empty());
}

PIA_TEST(library_search_explicit_override) {
  const std::string d = temp_dir("forced");
  touch(d + "/mylt.so");
  {
    EnvVar forced("PIA_TEST_FORCED_LIB", d + "/mylt.so");
    EXPECT(find_nvidia_library({"libcublasLt.so.12"}, "cublas", "PIA_TEST_FORCED_LIB").path == d + "/mylt.so");
  }
  {
    // An explicit path that is not there finds nothing rather than something else.
    EnvVar forced("PIA_TEST_FORCED_LIB", d + "/missing.so");
    const LibrarySearch s = find_nvidia_library({"libcublasLt.so.12"}, "cublas", "PIA_TEST_FORCED_LIB");
    EXPECT(s.path.empty() && s.searched.size() == 1);
  }
}

// What this machine has (printed for the GPU run's log), and that the loader's report is coherent.
PIA_TEST(cuda_optional_libraries_reported) {
  const CudaStatus& s = cuda_status();
  for (const auto& [name, lib] : {std::pair<const char*, const OptionalLibrary*>{"cuBLASLt", &s.cublaslt},
                                  std::pair<const char*, const OptionalLibrary*>{"cuDNN", &s.cudnn}}) {
    std::printf("     %s: %s%s%s%s\n", name, lib->path.empty() ? "not found" : lib->path.c_str(),
                lib->in_use ? ", in use " : "", lib->version.c_str(), lib->note.empty() ? "" : (", " + lib->note).c_str());
    EXPECT(!lib->in_use || (!lib->path.empty() && s.available && !lib->version.empty()));
    EXPECT(lib->in_use || !lib->note.empty());  // pia doctor always says why not
  }
  EXPECT(s.cublaslt.path == cublaslt_search().path);
  EXPECT(s.cudnn.path == cudnn_search().path);
}
