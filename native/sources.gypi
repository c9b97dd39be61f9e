# The one list of native sources. binding.gyp includes this file; CMakeLists.txt reads it too.
{
  'variables': {
    'pia_core_sources': [
      'native/core/json.cpp',
      'native/core/tensor.cpp',
      'native/core/thread_pool.cpp',
      'native/io/mapped_file.cpp',
      'native/io/safetensors.cpp',
      'native/cpu/cpu_features.cpp',
      'native/cpu/cpu_backend.cpp',
      'native/cpu/attention.cpp',
      'native/cpu/conv2d.cpp',
      'native/cpu/elementwise.cpp',
      'native/cpu/fourier_filter.cpp',
      'native/cpu/gemm.cpp',
      'native/cpu/norm.cpp',
      'native/cpu/simd.cpp',
      'native/cuda/cuda_loader.cpp',
      'native/nn/weight_store.cpp',
      'native/nn/resnet.cpp',
      'native/nn/attention_processor.cpp',
      'native/nn/clip_text_model.cpp',
      'native/nn/autoencoder_kl.cpp',
    ],
    # Compiled with AVX2/FMA/F16C enabled; only called after cpu_features() says the CPU has them.
    'pia_avx2_sources': [
      'native/cpu/simd_avx2.cpp',
    ],
    'pia_addon_sources': [
      'native/addon/addon.cpp',
      'native/addon/backends_binding.cpp',
      'native/addon/safetensors_binding.cpp',
      'native/addon/clip_text_binding.cpp',
      'native/addon/autoencoder_kl_binding.cpp',
    ],
  },
}
