// autoencoderKL.{load, encode, decode, dispose}: lib/models/autoencoder_kl.ts holds the slicing and
// tiling switches and validates inputs; this layer runs native/nn/autoencoder_kl off the JS thread.
#include <napi.h>

#include <memory>

#include "../nn/autoencoder_kl.h"
#include "async.h"
#include "bindings.h"
#include "js_errors.h"
#include "model_handle.h"
#include "placement.h"
#include "tensor_js.h"

namespace pia::addon {

namespace {

using nn::AutoencoderKL;
using nn::AutoencoderKLConfig;
using nn::LatentDistribution;

const napi_type_tag kVaeTag = {0x2b6e9d41c07f3a58ull, 0xd15a7e3c94b02f86ull};

Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto args = std::make_shared<LoadArgs>(load_args(info, "autoencoderKL.load"));
    const Placement place = placement_arg(info, 2, "autoencoderKL.load");
    auto model = std::make_shared<std::shared_ptr<const AutoencoderKL>>();
    auto backend = std::make_shared<std::shared_ptr<Backend>>();
    return run_async(
        env,
        [args, model, backend, place] {
          AutoencoderKLConfig config = AutoencoderKLConfig::from_json(parse_config(args->config_json));
          WeightStore store;
          store.set_label("vae");
          add_weight_files(store, args->weight_paths);
          *backend = placement_backend(place);
          *model = std::make_shared<const AutoencoderKL>(config, store, *backend);
        },
        [model, backend](Napi::Env e) { return wrap_model<AutoencoderKL>(e, *model, &kVaeTag, *backend); });
  });
}

struct Call {
  std::shared_ptr<const AutoencoderKL> model;
  Tensor x;
  bool slicing = false, tiling = false;
  CancelFlag cancel;
};

// (handle, x: Tensor, slicing: boolean, tiling: boolean, cancelToken?)
Call unpack(const Napi::CallbackInfo& info, const char* what) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[2].IsBoolean() || !info[3].IsBoolean()) {
    throw type_error(env, std::string(what) + "(handle, tensor, slicing: boolean, tiling: boolean)");
  }
  Call c;
  c.model = live_model<AutoencoderKL>(env, info[0], &kVaeTag, what);
  c.x = tensor_from_js(env, info[1], what);
  c.slicing = info[2].As<Napi::Boolean>().Value();
  c.tiling = info[3].As<Napi::Boolean>().Value();
  c.cancel = info.Length() > 4 ? cancel_flag(env, info[4]) : nullptr;
  return c;
}

Napi::Value Encode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto call = std::make_shared<Call>(unpack(info, "autoencoderKL.encode"));
    auto out = std::make_shared<LatentDistribution>();
    return run_async(
        env, [call, out] { *out = call->model->encode(call->x, call->slicing, call->tiling, call->cancel.get()); },
        [out](Napi::Env e) -> Napi::Value {
          Napi::Object o = Napi::Object::New(e);
          o.Set("mean", tensor_to_js(e, out->mean));
          o.Set("logvar", tensor_to_js(e, out->logvar));
          o.Set("std", tensor_to_js(e, out->std));
          return o;
        });
  });
}

Napi::Value Decode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto call = std::make_shared<Call>(unpack(info, "autoencoderKL.decode"));
    auto out = std::make_shared<Tensor>();
    return run_async(
        env, [call, out] { *out = call->model->decode(call->x, call->slicing, call->tiling, call->cancel.get()); },
        [out](Napi::Env e) -> Napi::Value { return tensor_to_js(e, *out); });
  });
}

Napi::Value Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1) throw type_error(env, "autoencoderKL.dispose(handle)");
    model_handle<AutoencoderKL>(env, info[0], &kVaeTag, "autoencoderKL.dispose").model.reset();
    return env.Undefined();
  });
}

Napi::Value SetResident(const Napi::CallbackInfo& info) {
  return set_resident<AutoencoderKL>(info, &kVaeTag, "autoencoderKL.setResident");
}

}  // namespace

void register_autoencoder_kl(Napi::Env env, Napi::Object exports) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("load", Napi::Function::New(env, Load, "load"));
  o.Set("encode", Napi::Function::New(env, Encode, "encode"));
  o.Set("decode", Napi::Function::New(env, Decode, "decode"));
  o.Set("dispose", Napi::Function::New(env, Dispose, "dispose"));
  o.Set("setResident", Napi::Function::New(env, SetResident, "setResident"));
  o.Set("cancelToken", Napi::Function::New(env, make_cancel_token, "cancelToken"));
  o.Set("cancel", Napi::Function::New(env, cancel_token, "cancel"));
  exports.Set("autoencoderKL", o);
}

}  // namespace pia::addon
