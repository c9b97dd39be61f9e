#pragma once
// Where a loaded network lives. The load functions take an optional last argument
// { device: 'cpu' | 'cuda:N', dtype: 'float32' | 'float16' | 'bfloat16' } that
// lib/loaders/device_options.ts has already checked and resolved ('auto' included); the backend
// itself is made off the JS thread by make_backend, so the addon holds no policy of its own.
#include <napi.h>

#include <memory>
#include <string>

#include "../core/dtype.h"
#include "../cuda/cuda_backend.h"
#include "../ops/backend.h"
#include "async.h"
#include "js_errors.h"
#include "model_handle.h"

namespace pia::addon {

struct Placement {
  std::string device = "cpu";
  DType dtype = DType::F32;
};

inline Placement placement_arg(const Napi::CallbackInfo& info, size_t index, const std::string& what) {
  Napi::Env env = info.Env();
  Placement p;
  if (info.Length() <= index || info[index].IsUndefined() || info[index].IsNull()) return p;
  if (!info[index].IsObject()) throw type_error(env, what + ": placement must be { device, dtype }");
  Napi::Object o = info[index].As<Napi::Object>();
  Napi::Value device = o.Get("device"), dtype = o.Get("dtype");
  if (!device.IsUndefined()) {
    if (!device.IsString()) throw type_error(env, what + ": placement.device must be a string");
    p.device = device.As<Napi::String>().Utf8Value();
  }
  if (!dtype.IsUndefined()) {
    const std::string d = dtype.IsString() ? dtype.As<Napi::String>().Utf8Value() : std::string();
    if (d == "float32") p.dtype = DType::F32;
    else if (d == "float16") p.dtype = DType::F16;
    else if (d == "bfloat16") p.dtype = DType::BF16;
    else throw type_error(env, what + ": placement.dtype must be 'float32', 'float16' or 'bfloat16'");
  }
  return p;
}

// Off the JS thread: the backend a network is built on.
inline std::shared_ptr<Backend> placement_backend(const Placement& p) { return make_backend(p.device, p.dtype); }

// setResident(handle, onDevice: boolean) -> Promise<void>: the model's weights to host memory and
// back (diffusers' enable_model_cpu_offload; lib/models/model_cpu_offload.ts decides when).
template <typename Model>
Napi::Value set_resident(const Napi::CallbackInfo& info, const napi_type_tag* tag, const char* what) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[1].IsBoolean()) throw type_error(env, std::string(what) + "(handle, onDevice: boolean)");
    auto& h = model_handle<Model>(env, info[0], tag, what);
    if (!h.model) throw make_js_error(env, ErrorInfo{"E_INVALID_ARGUMENT", std::string(what) + ": the model was disposed", {}, {}});
    std::shared_ptr<Backend> backend = h.backend;
    auto model = h.model;  // kept alive until the move is done
    const bool on_device = info[1].As<Napi::Boolean>().Value();
    return run_async(
        env,
        [backend, model, on_device] {
          if (backend) backend->set_weights_resident(on_device);
        },
        [](Napi::Env e) -> Napi::Value { return e.Undefined(); });
  });
}

}  // namespace pia::addon
