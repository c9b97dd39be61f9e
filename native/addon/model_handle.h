#pragma once
// Loaded networks cross to JS as type-tagged Externals holding a shared_ptr: dispose() drops the
// handle's reference at once, while a forward already running keeps its own until it finishes.
// Loading (config parse, weight mapping, model construction) runs off the JS thread.
#include <napi.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "../core/errors.h"
#include "../core/json.h"
#include "../io/safetensors.h"
#include "../nn/weight_store.h"
#include "js_errors.h"

namespace pia::addon {

template <typename Model>
struct ModelHandle {
  std::shared_ptr<const Model> model;
};

template <typename Model>
Napi::Value wrap_model(Napi::Env env, std::shared_ptr<const Model> model, const napi_type_tag* tag) {
  auto* h = new ModelHandle<Model>{std::move(model)};
  auto ext = Napi::External<ModelHandle<Model>>::New(env, h, [](Napi::Env, ModelHandle<Model>* p) { delete p; });
  ext.TypeTag(tag);
  return ext;
}

template <typename Model>
ModelHandle<Model>& model_handle(Napi::Env env, const Napi::Value& v, const napi_type_tag* tag, const char* what) {
  if (!v.IsExternal() || !v.As<Napi::External<ModelHandle<Model>>>().CheckTypeTag(tag)) {
    throw type_error(env, std::string(what) + ": not a model handle");
  }
  return *v.As<Napi::External<ModelHandle<Model>>>().Data();
}

template <typename Model>
std::shared_ptr<const Model> live_model(Napi::Env env, const Napi::Value& v, const napi_type_tag* tag, const char* what) {
  auto& h = model_handle<Model>(env, v, tag, what);
  if (!h.model) throw make_js_error(env, ErrorInfo{"E_INVALID_ARGUMENT", std::string(what) + ": the model was disposed", {}, {}});
  return h.model;
}

// Cancellation of a long call: JS makes a token, passes it with the call and sets it from an
// AbortSignal's listener; the network polls the flag between blocks and throws E_ABORTED.
using CancelFlag = std::shared_ptr<std::atomic<bool>>;
inline const napi_type_tag kCancelTag = {0x5a1c9e27d3f04b86ull, 0x8b3f6d0a2c7e9145ull};

inline Napi::Value make_cancel_token(const Napi::CallbackInfo& info) {
  auto* flag = new CancelFlag(std::make_shared<std::atomic<bool>>(false));
  auto ext = Napi::External<CancelFlag>::New(info.Env(), flag, [](Napi::Env, CancelFlag* p) { delete p; });
  ext.TypeTag(&kCancelTag);
  return ext;
}

// The flag of an optional token argument (null/undefined: none).
inline CancelFlag cancel_flag(Napi::Env env, const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  if (!v.IsExternal() || !v.As<Napi::External<CancelFlag>>().CheckTypeTag(&kCancelTag)) {
    throw type_error(env, "not a cancel token");
  }
  return *v.As<Napi::External<CancelFlag>>().Data();
}

inline Napi::Value cancel_token(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1) throw type_error(env, "cancel(token)");
    cancel_flag(env, info[0])->store(true);
    return env.Undefined();
  });
}

// (configJson: string, weightPaths: string[]) as the load functions take them.
struct LoadArgs {
  std::string config_json;
  std::vector<std::string> weight_paths;
};

inline LoadArgs load_args(const Napi::CallbackInfo& info, const char* what) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray()) {
    throw type_error(env, std::string(what) + "(configJson, weightPaths): expected a string and an array of paths");
  }
  LoadArgs a;
  a.config_json = info[0].As<Napi::String>().Utf8Value();
  Napi::Array paths = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < paths.Length(); ++i) {
    Napi::Value p = paths.Get(i);
    if (!p.IsString()) throw type_error(env, std::string(what) + ": weightPaths must hold strings");
    a.weight_paths.push_back(p.As<Napi::String>().Utf8Value());
  }
  if (a.weight_paths.empty()) throw type_error(env, std::string(what) + ": weightPaths is empty");
  return a;
}

// Off the JS thread: the parsed config and a WeightStore over every weight file.
inline JsonValue parse_config(const std::string& text) {
  try {
    return parse_json(text.data(), text.size());
  } catch (const std::exception& e) {
    throw_error("E_UNSUPPORTED", std::string("config.json is not valid JSON: ") + e.what());
  }
}

inline void add_weight_files(WeightStore& store, const std::vector<std::string>& paths) {
  for (const auto& p : paths) store.add_file(SafetensorsFile::open(p));
}

}  // namespace pia::addon
