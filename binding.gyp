# The node-gyp route (CPU only). The real build is CMakeLists.txt via cmake-js; both read
# native/sources.gypi.
{
  'includes': ['native/sources.gypi'],
  'targets': [
    {
      'target_name': 'pia_avx2',
      'type': 'static_library',
      'sources': ['<@(pia_avx2_sources)'],
      'include_dirs': ['native'],
      'cflags_cc': ['-std=c++17', '-O3', '-fPIC', '-mavx2', '-mfma', '-mf16c'],
      'cflags_cc!': ['-fno-exceptions'],
    },
    {
      'target_name': 'pia_addon',
      'dependencies': ['pia_avx2'],
      'sources': ['<@(pia_core_sources)', '<@(pia_addon_sources)'],
      'include_dirs': ['<!(node -p "require(\'node-addon-api\').include_dir")', 'native'],
      'defines': ['NAPI_VERSION=8', 'NAPI_CPP_EXCEPTIONS', 'NODE_ADDON_API_DISABLE_DEPRECATED'],
      'cflags_cc': ['-std=c++17', '-O3', '-fvisibility=hidden'],
      'cflags_cc!': ['-fno-exceptions', '-fno-rtti', '-std=gnu++17'],
      'libraries': ['-ldl', '-lpthread'],
    },
  ],
}
