#include <napi.h>

#include "bindings.h"

namespace {
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  pia::addon::register_backends(env, exports);
  pia::addon::register_safetensors(env, exports);
  pia::addon::register_torch_checkpoint(env, exports);
  pia::addon::register_unet_motion(env, exports);
  pia::addon::register_clip_text(env, exports);
  pia::addon::register_autoencoder_kl(env, exports);
  pia::addon::register_clip_vision(env, exports);
  pia::addon::register_ip_adapter(env, exports);
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  return exports;
}
}  // namespace

NODE_API_MODULE(pia_addon, Init)
