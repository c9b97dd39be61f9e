#pragma once
// Loaded networks cross to JS as type-tagged Externals holding a shared_ptr: dispose() drops the
// handle's reference at once, while a forward already running keeps its own until it finishes.
// Loading (config parse, weight mapping, model construction) runs off the JS thread.
#include <napi.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../core/errors.h"
#include "../core/json.h"
#include "../io/safetensors.h"
#include "../io/torch_checkpoint.h"
#include "../io/weight_file.h"
#include "../nn/weight_store.h"
#include "../ops/backend.h"
#include "js_errors.h"

namespace pia::addon {

template <typename Model>
struct ModelHandle {
  std::shared_ptr<const Model> model;
  // The backend the network was built on (placement.h), for moving its weights (setResident).
  std::shared_ptr<Backend> backend;
};

template <typename Model>
Napi::Value wrap_model(Napi::Env env, std::shared_ptr<const Model> model, const napi_type_tag* tag,
                       std::shared_ptr<Backend> backend = nullptr) {
  auto* h = new ModelHandle<Model>{std::move(model), std::move(backend)};
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

// One weight file as the load functions take it: a path (every tensor under its own name), or
// { path, keyMap } where keyMap is JSON {"keys": {diffusersKey: fileKey, ...}, "squeeze": [diffusersKey, ...]}
// computed in lib/loaders (e.g. a single-file LDM checkpoint): only the mapped tensors are registered.
struct WeightSource {
  std::string path;
  std::string key_map_json;  // empty: the file's own keys
};

inline std::vector<WeightSource> weight_sources(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsArray()) throw type_error(env, what + " must be an array of paths or { path, keyMap } objects");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<WeightSource> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value p = a.Get(i);
    if (p.IsString()) {
      out.push_back({p.As<Napi::String>().Utf8Value(), {}});
    } else if (p.IsObject() && p.As<Napi::Object>().Get("path").IsString() &&
               p.As<Napi::Object>().Get("keyMap").IsString()) {
      Napi::Object o = p.As<Napi::Object>();
      out.push_back({o.Get("path").As<Napi::String>().Utf8Value(), o.Get("keyMap").As<Napi::String>().Utf8Value()});
    } else {
      throw type_error(env, what + " must hold paths or { path: string, keyMap: string } objects");
    }
  }
  if (out.empty()) throw type_error(env, what + " is empty");
  return out;
}

// (configJson: string, weightSources) as the load functions take them.
struct LoadArgs {
  std::string config_json;
  std::vector<WeightSource> weight_paths;
};

inline LoadArgs load_args(const Napi::CallbackInfo& info, const char* what) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray()) {
    throw type_error(env, std::string(what) + "(configJson, weightPaths): expected a string and an array of paths");
  }
  LoadArgs a;
  a.config_json = info[0].As<Napi::String>().Utf8Value();
  a.weight_paths = weight_sources(env, info[1], std::string(what) + ": weightPaths");
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

struct KeyMap {
  std::vector<WeightStore::KeyAlias> aliases;
  std::vector<std::string> at;  // a torch checkpoint's dict path (a `state_dict` wrapper)
};

inline KeyMap parse_key_map(const std::string& text, const std::string& path) {
  JsonValue j;
  try {
    j = parse_json(text.data(), text.size());
  } catch (const std::exception& e) {
    throw_error("E_INVALID_ARGUMENT", std::string("key map of ") + path + " is not valid JSON: " + e.what(), {}, path);
  }
  const JsonValue* keys = j.get("keys");
  if (!keys || !keys->is_object()) throw_error("E_INVALID_ARGUMENT", "key map of " + path + ": expected {\"keys\": {...}}", {}, path);
  KeyMap map;
  std::vector<WeightStore::KeyAlias>& out = map.aliases;
  std::map<std::string, size_t> index;
  for (const auto& kv : keys->object) {
    if (!kv.second.is_string()) throw_error("E_INVALID_ARGUMENT", "key map of " + path + ": '" + kv.first + "' must map to a string", kv.first, path);
    index[kv.first] = out.size();
    out.push_back({kv.first, kv.second.string, false});
  }
  if (const JsonValue* sq = j.get("squeeze")) {
    if (!sq->is_array()) throw_error("E_INVALID_ARGUMENT", "key map of " + path + ": squeeze must be an array", {}, path);
    for (const auto& k : sq->array) {
      auto it = k.is_string() ? index.find(k.string) : index.end();
      if (it == index.end()) throw_error("E_INVALID_ARGUMENT", "key map of " + path + ": squeeze names an unmapped key", {}, path);
      out[it->second].squeeze = true;
    }
  }
  if (const JsonValue* at = j.get("at")) {
    if (!at->is_array()) throw_error("E_INVALID_ARGUMENT", "key map of " + path + ": at must be an array of keys", {}, path);
    for (const auto& k : at->array) {
      if (!k.is_string()) throw_error("E_INVALID_ARGUMENT", "key map of " + path + ": at must hold strings", {}, path);
      map.at.push_back(k.string);
    }
  }
  return map;
}

inline void add_weight_files(WeightStore& store, const std::vector<WeightSource>& sources) {
  for (const auto& s : sources) {
    if (s.key_map_json.empty()) {
      store.add_file(open_weight_file(s.path));
    } else {
      KeyMap map = parse_key_map(s.key_map_json, s.path);
      // A wrapped state dict can only be a torch checkpoint; open_weight_file reads the root dict.
      std::shared_ptr<WeightFile> file = map.at.empty() ? open_weight_file(s.path)
                                                        : std::make_shared<TorchStateDict>(TorchCheckpoint::open(s.path), map.at);
      store.add_file_mapped(file, map.aliases);
    }
  }
}

}  // namespace pia::addon
