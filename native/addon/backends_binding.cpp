// backends(), setNumThreads(), cudaSelfTest(): what the machine can do, for `pia doctor`.
#include <napi.h>

#include <memory>
#include <vector>

#include "../core/thread_pool.h"
#include "../cpu/cpu_features.h"
#include "../cuda/cuda_loader.h"
#include "async.h"
#include "bindings.h"
#include "js_errors.h"

namespace pia::addon {

namespace {

Napi::Value Backends(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    Napi::Object out = Napi::Object::New(env);
    Napi::Object cpu = Napi::Object::New(env);
    cpu.Set("threads", Napi::Number::New(env, ThreadPool::global()->size()));
    auto names = cpu_features().names();
    Napi::Array feats = Napi::Array::New(env, names.size());
    for (size_t i = 0; i < names.size(); ++i) feats.Set(uint32_t(i), Napi::String::New(env, names[i]));
    cpu.Set("features", feats);
    out.Set("cpu", cpu);

    const CudaStatus& s = cuda_status();
    Napi::Object cuda = Napi::Object::New(env);
    cuda.Set("available", Napi::Boolean::New(env, s.available));
    if (!s.available) cuda.Set("reason", Napi::String::New(env, s.reason));
    if (!s.library.empty()) cuda.Set("library", Napi::String::New(env, s.library));
    Napi::Array devs = Napi::Array::New(env, s.devices.size());
    for (size_t i = 0; i < s.devices.size(); ++i) {
      const CudaDevice& d = s.devices[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("index", d.index);
      o.Set("name", d.name);
      o.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
      o.Set("totalMemory", double(d.total_memory));
      o.Set("freeMemory", double(d.free_memory));
      o.Set("multiprocessors", d.multiprocessors);
      o.Set("driverVersion", d.driver_version);
      o.Set("runtimeVersion", d.runtime_version);
      devs.Set(uint32_t(i), o);
    }
    if (s.available) cuda.Set("devices", devs);
    Napi::Object libs = Napi::Object::New(env);
    auto lib = [&](const char* key, const OptionalLibrary& l) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("found", Napi::Boolean::New(env, !l.path.empty()));
      if (!l.path.empty()) o.Set("path", l.path);
      o.Set("inUse", Napi::Boolean::New(env, l.in_use));
      if (!l.version.empty()) o.Set("version", l.version);
      if (!l.note.empty()) o.Set("note", l.note);
      libs.Set(key, o);
    };
    lib("cublasLt", s.cublaslt);
    lib("cudnn", s.cudnn);
    cuda.Set("libraries", libs);
    out.Set("cuda", cuda);
    return out;
  });
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsNumber()) throw type_error(env, "setNumThreads(n): n must be a number");
    int n = info[0].As<Napi::Number>().Int32Value();
    ThreadPool::set_global_threads(n > 0 ? n : 0);
    return Napi::Number::New(env, ThreadPool::global()->size());
  });
}

// Adds two vectors on GPU `device` and returns the sum: proves the driver/library seam works.
Napi::Value CudaSelfTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const CudaApi* api = cuda_api();
    if (!api) throw_error("E_BACKEND", "CUDA is unavailable: " + cuda_status().reason);
    int device = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    auto a = std::make_shared<std::vector<float>>(1000), b = std::make_shared<std::vector<float>>(1000),
         out = std::make_shared<std::vector<float>>(1000);
    for (int i = 0; i < 1000; ++i) {
      (*a)[size_t(i)] = float(i);
      (*b)[size_t(i)] = 0.5f * float(i);
    }
    return run_async(
        env,
        [=] {
          char err[512] = {0};
          if (api->add_f32(device, a->data(), b->data(), out->data(), a->size(), err, sizeof err) != 0) {
            throw_error("E_BACKEND", err);
          }
          for (size_t i = 0; i < a->size(); ++i) {
            if ((*out)[i] != (*a)[i] + (*b)[i]) throw_error("E_BACKEND", "CUDA add returned a wrong sum");
          }
        },
        [](Napi::Env e) -> Napi::Value { return Napi::Boolean::New(e, true); });
  });
}

}  // namespace

void register_backends(Napi::Env env, Napi::Object exports) {
  exports.Set("backends", Napi::Function::New(env, Backends, "backends"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("cudaSelfTest", Napi::Function::New(env, CudaSelfTest, "cudaSelfTest"));
}

}  // namespace pia::addon
