#pragma once
// The IP-Adapter handle's tag, shared by ip_adapter_binding.cpp (which makes handles) and
// unet_motion_binding.cpp (whose forward takes one).
#include <napi.h>

#include "../nn/ip_adapter.h"
#include "model_handle.h"

namespace pia::addon {

inline const napi_type_tag kIPAdapterTag = {0x3e9b0c4d71a25f86ull, 0xc2d84f1a9e07b635ull};

inline std::shared_ptr<const nn::IPAdapter> live_ip_adapter(Napi::Env env, const Napi::Value& v, const char* what) {
  return live_model<nn::IPAdapter>(env, v, &kIPAdapterTag, what);
}

}  // namespace pia::addon
