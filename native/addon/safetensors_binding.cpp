// SafetensorsFile: the validated native reader, exposed to lib/io/safetensors.ts. Dtype handling
// (typed arrays, widening) stays in TypeScript; this layer only hands out names, shapes and bytes.
#include <napi.h>

#include <cstring>
#include <memory>

#include "../io/safetensors.h"
#include "bindings.h"
#include "js_errors.h"

namespace pia::addon {

namespace {

class SafetensorsFileWrap : public Napi::ObjectWrap<SafetensorsFileWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "SafetensorsFile",
                       {InstanceMethod("names", &SafetensorsFileWrap::Names),
                        InstanceMethod("metadata", &SafetensorsFileWrap::Metadata),
                        InstanceMethod("info", &SafetensorsFileWrap::Info),
                        InstanceMethod("read", &SafetensorsFileWrap::Read),
                        InstanceMethod("close", &SafetensorsFileWrap::Close)});
  }

  explicit SafetensorsFileWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SafetensorsFileWrap>(info) {
    Napi::Env env = info.Env();
    guarded(env, [&]() -> Napi::Value {
      if (info.Length() < 1 || !info[0].IsString()) throw type_error(env, "SafetensorsFile(path): path must be a string");
      file_ = SafetensorsFile::open(info[0].As<Napi::String>().Utf8Value());
      return env.Undefined();
    });
  }

 private:
  const SafetensorsFile& file(Napi::Env env) {
    if (!file_) throw make_js_error(env, ErrorInfo{"E_INVALID_ARGUMENT", "the safetensors file was closed", {}, {}});
    return *file_;
  }
  const SafetensorsEntry& entry(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw type_error(env, "tensor name must be a string");
    std::string name = info[0].As<Napi::String>().Utf8Value();
    const SafetensorsEntry* e = file(env).find(name);
    if (!e) throw_error("E_WEIGHTS_MISMATCH", file(env).path() + ": no tensor named '" + name + "'", name, file(env).path());
    return *e;
  }

  Napi::Value Names(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, [&]() -> Napi::Value {
      const auto& entries = file(env).entries();
      Napi::Array out = Napi::Array::New(env, entries.size());
      for (size_t i = 0; i < entries.size(); ++i) out.Set(uint32_t(i), Napi::String::New(env, entries[i].name));
      return out;
    });
  }

  Napi::Value Metadata(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, [&]() -> Napi::Value {
      Napi::Object out = Napi::Object::New(env);
      for (const auto& kv : file(env).metadata()) out.Set(kv.first, kv.second);
      return out;
    });
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, [&]() -> Napi::Value {
      const SafetensorsEntry& e = entry(info);
      Napi::Object out = Napi::Object::New(env);
      out.Set("dtype", e.dtype);
      Napi::Array shape = Napi::Array::New(env, e.shape.size());
      for (size_t i = 0; i < e.shape.size(); ++i) shape.Set(uint32_t(i), Napi::Number::New(env, double(e.shape[i])));
      out.Set("shape", shape);
      out.Set("byteLength", Napi::Number::New(env, double(e.end - e.begin)));
      return out;
    });
  }

  // A copy of the tensor's bytes: JS owns it independently of the mapping's lifetime.
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, [&]() -> Napi::Value {
      const SafetensorsEntry& e = entry(info);
      size_t n = size_t(e.end - e.begin);
      Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(env, n);
      if (n) std::memcpy(buf.Data(), file(env).bytes(e), n);
      return buf;
    });
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    file_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<SafetensorsFile> file_;
};

}  // namespace

void register_safetensors(Napi::Env env, Napi::Object exports) {
  exports.Set("SafetensorsFile", SafetensorsFileWrap::Define(env));
}

}  // namespace pia::addon
