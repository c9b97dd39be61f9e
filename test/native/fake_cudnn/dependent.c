/* A stand-in sub-library that needs another library (test_cudnn_loading.cpp): it calls into it, so
 * that the linker keeps the dependency, and opens only where that library can be found. */
int pia_fake_cudnn_sublibrary(void);
int pia_fake_cudnn_dependent(void) { return pia_fake_cudnn_sublibrary() + 1; }
