#pragma once
// Tensors across the boundary: JS { data: Float32Array, shape: number[] } <-> a float32 Tensor.
// Copies both ways so that neither side's memory outlives the other's.
#include <napi.h>

#include <cstring>
#include <string>

#include "../core/tensor.h"
#include "js_errors.h"

namespace pia::addon {

inline Tensor tensor_from_js(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsObject()) throw type_error(env, what + ": expected { data: Float32Array, shape: number[] }");
  Napi::Object o = v.As<Napi::Object>();
  Napi::Value data = o.Get("data");
  Napi::Value shape = o.Get("shape");
  if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array || !shape.IsArray()) {
    throw type_error(env, what + ": expected { data: Float32Array, shape: number[] }");
  }
  Napi::Float32Array arr = data.As<Napi::Float32Array>();
  Napi::Array sh = shape.As<Napi::Array>();
  Shape s;
  for (uint32_t i = 0; i < sh.Length(); ++i) {
    Napi::Value d = sh.Get(i);
    if (!d.IsNumber()) throw type_error(env, what + ": shape must hold numbers");
    double x = d.As<Napi::Number>().DoubleValue();
    if (x < 0 || x != double(int64_t(x))) throw type_error(env, what + ": shape must hold non-negative integers");
    s.push_back(int64_t(x));
  }
  if (shape_numel(s) != int64_t(arr.ElementLength())) {
    throw type_error(env, what + ": data length " + std::to_string(arr.ElementLength()) + " does not match shape " + shape_str(s));
  }
  Tensor t = Tensor::empty(s, DType::F32);
  if (t.nbytes()) std::memcpy(t.raw(), arr.Data(), t.nbytes());
  return t;
}

// `t` must be a contiguous float32 host tensor.
inline Napi::Object tensor_to_js(Napi::Env env, const Tensor& t) {
  Napi::Float32Array arr = Napi::Float32Array::New(env, size_t(t.numel()));
  if (t.nbytes()) std::memcpy(arr.Data(), t.raw(), t.nbytes());
  Napi::Array shape = Napi::Array::New(env, t.shape().size());
  for (size_t i = 0; i < t.shape().size(); ++i) shape.Set(uint32_t(i), Napi::Number::New(env, double(t.shape()[i])));
  Napi::Object o = Napi::Object::New(env);
  o.Set("data", arr);
  o.Set("shape", shape);
  return o;
}

}  // namespace pia::addon
