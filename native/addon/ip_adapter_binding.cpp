// ipAdapter.{load, project, dispose}: lib/loaders/ip_adapter.ts reads the adapter file (.safetensors
// or .bin) and converts its keys; this layer builds native/nn/ip_adapter's IPAdapter off the JS thread.
#include <napi.h>

#include <memory>

#include "../core/json.h"
#include "../nn/ip_adapter.h"
#include "async.h"
#include "bindings.h"
#include "ip_adapter_handle.h"
#include "js_errors.h"
#include "model_handle.h"
#include "placement.h"
#include "tensor_js.h"

namespace pia::addon {

namespace {

using nn::IPAdapter;
using nn::IpAttnSite;

// load(kind: 'base' | 'plus', tensors: { [key]: Tensor }, sitesJson: string, crossAttentionDim, encoderPositions)
Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 5 || !info[0].IsString() || !info[1].IsObject() || !info[2].IsString() || !info[3].IsNumber() ||
        !info[4].IsNumber()) {
      throw type_error(env, "ipAdapter.load(kind, tensors, sitesJson, crossAttentionDim, encoderPositions)");
    }
    struct Args {
      nn::ImageProjectionKind kind = nn::ImageProjectionKind::Base;
      std::vector<std::pair<std::string, Tensor>> tensors;
      std::string sites_json;
      int64_t cross = 0, positions = 0;
    };
    auto args = std::make_shared<Args>();
    const std::string kind = info[0].As<Napi::String>().Utf8Value();
    if (kind != "base" && kind != "plus") throw type_error(env, "ipAdapter.load: kind must be 'base' or 'plus'");
    args->kind = kind == "base" ? nn::ImageProjectionKind::Base : nn::ImageProjectionKind::Plus;
    Napi::Object t = info[1].As<Napi::Object>();
    Napi::Array names = t.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); ++i) {
      const std::string name = names.Get(i).As<Napi::String>().Utf8Value();
      args->tensors.emplace_back(name, tensor_from_js(env, t.Get(name), "ipAdapter.load: " + name));
    }
    args->sites_json = info[2].As<Napi::String>().Utf8Value();
    args->cross = info[3].As<Napi::Number>().Int64Value();
    args->positions = info[4].As<Napi::Number>().Int64Value();
    // The UNet's placement: the IP attention weights are read inside its cross-attention.
    const Placement place = placement_arg(info, 5, "ipAdapter.load");
    auto model = std::make_shared<std::shared_ptr<const IPAdapter>>();
    auto backend = std::make_shared<std::shared_ptr<Backend>>();
    return run_async(
        env,
        [args, model, backend, place] {
          std::vector<IpAttnSite> sites;
          const JsonValue j = parse_config(args->sites_json);
          for (const JsonValue& s : j.array) {
            sites.push_back({s.get("name")->string, int64_t(s.get("hidden_size")->number),
                             int64_t(s.get("cross_attention_dim")->number)});
          }
          WeightStore store;
          for (auto& [name, tensor] : args->tensors) store.put(name, tensor);
          *backend = placement_backend(place);
          *model = std::make_shared<const IPAdapter>(*backend, store, args->kind, sites, args->cross,
                                                     args->positions);
        },
        [model, backend](Napi::Env e) { return wrap_model<IPAdapter>(e, *model, &kIPAdapterTag, *backend); });
  });
}

// project(handle, imageEmbeds: Tensor) -> the image tokens [B, T, cross_attention_dim]
Napi::Value Project(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 2) throw type_error(env, "ipAdapter.project(handle, imageEmbeds)");
    auto model = live_ip_adapter(env, info[0], "ipAdapter.project");
    auto embeds = std::make_shared<Tensor>(tensor_from_js(env, info[1], "ipAdapter.project: imageEmbeds"));
    auto out = std::make_shared<Tensor>();
    return run_async(
        env, [=] { *out = model->backend().to_host(model->project(*embeds)); },
        [out](Napi::Env e) -> Napi::Value { return tensor_to_js(e, *out); });
  });
}

Napi::Value Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1) throw type_error(env, "ipAdapter.dispose(handle)");
    model_handle<IPAdapter>(env, info[0], &kIPAdapterTag, "ipAdapter.dispose").model.reset();
    return env.Undefined();
  });
}

}  // namespace

void register_ip_adapter(Napi::Env env, Napi::Object exports) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("load", Napi::Function::New(env, Load, "load"));
  o.Set("project", Napi::Function::New(env, Project, "project"));
  o.Set("dispose", Napi::Function::New(env, Dispose, "dispose"));
  exports.Set("ipAdapter", o);
}

}  // namespace pia::addon
