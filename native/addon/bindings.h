#pragma once
#include <napi.h>

namespace pia::addon {
void register_backends(Napi::Env env, Napi::Object exports);
void register_safetensors(Napi::Env env, Napi::Object exports);
void register_torch_checkpoint(Napi::Env env, Napi::Object exports);
void register_unet_motion(Napi::Env env, Napi::Object exports);
void register_clip_text(Napi::Env env, Napi::Object exports);
void register_autoencoder_kl(Napi::Env env, Napi::Object exports);
void register_clip_vision(Napi::Env env, Napi::Object exports);
void register_ip_adapter(Napi::Env env, Napi::Object exports);
}  // namespace pia::addon
