#pragma once
// LoRA across the boundary (lib/loaders/lora.ts computes the key mapping and factors): a model's
// targets out as plain objects, contributions in as { module, down, up, factor, fused }, and the
// copy-on-write swap of a model handle after a change (a forward in flight keeps its own model).
#include <napi.h>

#include <memory>
#include <vector>

#include "../nn/lora.h"
#include "async.h"
#include "model_handle.h"
#include "tensor_js.h"

namespace pia::addon {

inline Napi::Value lora_targets_to_js(Napi::Env env, const std::vector<nn::LoraTarget>& targets) {
  Napi::Array out = Napi::Array::New(env, targets.size());
  for (size_t i = 0; i < targets.size(); ++i) {
    const nn::LoraTarget& t = targets[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", t.name);
    o.Set("kind", t.kind == nn::LoraTargetKind::Linear ? "linear" : "conv");
    o.Set("inFeatures", double(t.in));
    o.Set("outFeatures", double(t.out));
    o.Set("kernel", double(t.kernel));
    o.Set("scaled", t.scaled);
    out.Set(uint32_t(i), o);
  }
  return out;
}

inline std::vector<nn::LoraContribution> lora_contributions_from_js(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw type_error(env, std::string(what) + ": contributions must be an array");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<nn::LoraContribution> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsObject()) throw type_error(env, std::string(what) + ": each contribution must be an object");
    Napi::Object o = e.As<Napi::Object>();
    if (!o.Get("module").IsString() || !o.Get("factor").IsNumber() || !o.Get("fused").IsBoolean()) {
      throw type_error(env, std::string(what) + ": expected { module: string, down, up, factor: number, fused: boolean }");
    }
    nn::LoraContribution c;
    c.module = o.Get("module").As<Napi::String>().Utf8Value();
    c.down = tensor_from_js(env, o.Get("down"), std::string(what) + ": down of " + c.module);
    c.up = tensor_from_js(env, o.Get("up"), std::string(what) + ": up of " + c.module);
    c.factor = o.Get("factor").As<Napi::Number>().FloatValue();
    c.fused = o.Get("fused").As<Napi::Boolean>().Value();
    out.push_back(std::move(c));
  }
  return out;
}

// Runs `make(model)` off the JS thread and, if the handle is still live, points it at the result.
template <typename Model, typename Make>
Napi::Value swap_model_async(Napi::Env env, const Napi::Value& handle, const napi_type_tag* tag, const char* what,
                             Make make) {
  auto model = live_model<Model>(env, handle, tag, what);
  auto ref = std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(handle));
  auto result = std::make_shared<std::shared_ptr<const Model>>();
  return run_async(
      env, [model, result, make] { *result = make(*model); },
      [ref, result, tag, what](Napi::Env e) -> Napi::Value {
        auto& h = model_handle<Model>(e, ref->Value(), tag, what);
        if (h.model) h.model = *result;
        return e.Undefined();
      });
}

}  // namespace pia::addon
