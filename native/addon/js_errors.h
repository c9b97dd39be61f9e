#pragma once
// Every binding body runs inside guarded(): a PiaException becomes a JS Error with the same
// `code` (plus `key`/`file`), anything else becomes E_BACKEND; nothing escapes as a crash.
#include <napi.h>

#include <new>
#include <string>

#include "../core/errors.h"

namespace pia::addon {

struct ErrorInfo {
  std::string code = "E_BACKEND";
  std::string message;
  std::string key, file;
};

inline ErrorInfo capture_current_exception() {
  ErrorInfo info;
  try {
    throw;
  } catch (const PiaException& e) {
    info.code = e.code();
    info.message = e.what();
    info.key = e.key();
    info.file = e.file();
  } catch (const std::bad_alloc&) {
    info.code = "E_OUT_OF_MEMORY";
    info.message = "out of host memory";
  } catch (const std::exception& e) {
    info.message = e.what();
  } catch (...) {
    info.message = "unknown native error";
  }
  return info;
}

inline Napi::Error make_js_error(Napi::Env env, const ErrorInfo& info) {
  Napi::Error err = Napi::Error::New(env, info.message);
  err.Set("code", Napi::String::New(env, info.code));
  if (!info.key.empty()) err.Set("key", Napi::String::New(env, info.key));
  if (!info.file.empty()) err.Set("file", Napi::String::New(env, info.file));
  return err;
}

template <typename F>
Napi::Value guarded(Napi::Env env, F&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw make_js_error(env, capture_current_exception());
  }
}

inline Napi::Error type_error(Napi::Env env, const std::string& message) {
  return make_js_error(env, ErrorInfo{"E_INVALID_ARGUMENT", message, {}, {}});
}

}  // namespace pia::addon
