/* A stand-in for one of cuDNN's sub-libraries (test_cudnn_loading.cpp): it only has to load. */
int pia_fake_cudnn_sublibrary(void) { return 1; }
