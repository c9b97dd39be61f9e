/* A stand-in for cuDNN 9's dispatcher libcudnn.so.9 (test_cudnn_loading.cpp). Like the real one it
 * reaches its sub-libraries by bare soname: cudnnGetVersion reports 9.1.0 only when graph, ops and cnn
 * are already loaded under their sonames (RTLD_NOLOAD finds nothing else), and 0 otherwise. Every
 * other entry point fails (status 1000), which use_cudnn must report without crashing. */
#include <dlfcn.h>
#include <stddef.h>

static int loaded(const char* soname) { return dlopen(soname, RTLD_NOW | RTLD_NOLOAD) != NULL; }

size_t cudnnGetVersion(void) {
  return loaded("libcudnn_graph.so.9") && loaded("libcudnn_ops.so.9") && loaded("libcudnn_cnn.so.9") ? 90100 : 0;
}
const char* cudnnGetErrorString(int s) { return s ? "FAKE_CUDNN_STATUS_FAILURE" : "FAKE_CUDNN_STATUS_SUCCESS"; }
#define FAIL(name) \
  int name(void) { return 1000; }
FAIL(cudnnCreate)
FAIL(cudnnSetStream)
FAIL(cudnnCreateTensorDescriptor)
FAIL(cudnnSetTensor4dDescriptor)
FAIL(cudnnCreateFilterDescriptor)
FAIL(cudnnSetFilter4dDescriptor)
FAIL(cudnnCreateConvolutionDescriptor)
FAIL(cudnnSetConvolution2dDescriptor)
FAIL(cudnnSetConvolutionMathType)
FAIL(cudnnGetConvolution2dForwardOutputDim)
FAIL(cudnnGetConvolutionForwardAlgorithm_v7)
FAIL(cudnnGetConvolutionForwardWorkspaceSize)
FAIL(cudnnConvolutionForward)
