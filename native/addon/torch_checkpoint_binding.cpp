// TorchCheckpoint: the restricted torch checkpoint reader, exposed to lib/io/torch_checkpoint.ts.
// The value tree crosses as tagged objects ({t: 'dict', keys, values}, {t: 'tensor', index}, ...)
// that TypeScript turns into plain JS values; tensor bytes are copied out on request.
#include <napi.h>

#include <cstring>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "../io/torch_checkpoint.h"
#include "bindings.h"
#include "js_errors.h"

namespace pia::addon {

namespace {

class TorchCheckpointWrap : public Napi::ObjectWrap<TorchCheckpointWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TorchCheckpoint",
                       {InstanceMethod("root", &TorchCheckpointWrap::Root),
                        InstanceMethod("tensorInfo", &TorchCheckpointWrap::TensorInfo),
                        InstanceMethod("readTensor", &TorchCheckpointWrap::ReadTensor),
                        InstanceMethod("close", &TorchCheckpointWrap::Close)});
  }

  explicit TorchCheckpointWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TorchCheckpointWrap>(info) {
    Napi::Env env = info.Env();
    guarded(env, [&]() -> Napi::Value {
      if (info.Length() < 1 || !info[0].IsString()) throw type_error(env, "TorchCheckpoint(path): path must be a string");
      ckpt_ = TorchCheckpoint::open(info[0].As<Napi::String>().Utf8Value());
      return env.Undefined();
    });
  }

 private:
  const TorchCheckpoint& ckpt(Napi::Env env) {
    if (!ckpt_) throw make_js_error(env, ErrorInfo{"E_INVALID_ARGUMENT", "the checkpoint was closed", {}, {}});
    return *ckpt_;
  }
  const TorchTensor& tensor(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) throw type_error(env, "tensor index must be a number");
    int64_t i = info[0].As<Napi::Number>().Int64Value();
    const auto& ts = ckpt(env).tensors();
    if (i < 0 || size_t(i) >= ts.size()) throw type_error(env, "tensor index out of range");
    return ts[size_t(i)];
  }

  struct Converter {
    Napi::Env env;
    const TorchCheckpoint& ck;
    std::unordered_map<const PickleValue*, Napi::Value> done;  // shared sub-trees convert once
    std::unordered_set<const PickleValue*> open;               // on the current path: a cycle

    [[noreturn]] void corrupt(const std::string& what) {
      throw_error("E_WEIGHTS_CORRUPT", ck.path() + ": pickle: " + what, {}, ck.path());
    }

    Napi::Value tagged(const char* t) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("t", t);
      return o;
    }

    Napi::Value list(const std::vector<PickleValue*>& items, size_t begin, size_t step, size_t depth) {
      Napi::Array a = Napi::Array::New(env);
      uint32_t n = 0;
      for (size_t i = begin; i < items.size(); i += step) a.Set(n++, convert(*items[i], depth + 1));
      return a;
    }

    Napi::Value convert(const PickleValue& v, size_t depth) {
      if (depth > TorchCheckpoint::kMaxNesting) corrupt("objects nested more than " + std::to_string(TorchCheckpoint::kMaxNesting) + " deep");
      switch (v.kind) {
        case PickleKind::None: return env.Null();
        case PickleKind::Bool: return Napi::Boolean::New(env, v.boolean);
        case PickleKind::Int:
          if (v.integer > (int64_t(1) << 53) || v.integer < -(int64_t(1) << 53)) return Napi::BigInt::New(env, v.integer);
          return Napi::Number::New(env, double(v.integer));
        case PickleKind::Float: return Napi::Number::New(env, v.number);
        case PickleKind::String: return Napi::String::New(env, v.text);
        case PickleKind::Bytes: return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(v.text.data()), v.text.size());
        case PickleKind::BigInt: {
          // Little-endian two's complement -> sign and magnitude words.
          std::vector<uint8_t> b(v.text.begin(), v.text.end());
          bool negative = !b.empty() && (b.back() & 0x80);
          if (negative) {
            for (auto& x : b) x = uint8_t(~x);
            for (auto& x : b) if (++x != 0) break;
          }
          std::vector<uint64_t> words((b.size() + 7) / 8, 0);
          for (size_t i = 0; i < b.size(); ++i) words[i / 8] |= uint64_t(b[i]) << (8 * (i % 8));
          return Napi::BigInt::New(env, negative ? 1 : 0, words.size(), words.data());
        }
        case PickleKind::Tensor: {
          Napi::Object o = tagged("tensor").As<Napi::Object>();
          o.Set("index", Napi::Number::New(env, double(v.integer)));
          return o;
        }
        case PickleKind::Storage: {
          Napi::Object o = tagged("storage").As<Napi::Object>();
          o.Set("key", ck.storages()[size_t(v.integer)].key);
          return o;
        }
        case PickleKind::Global: {
          Napi::Object o = tagged("global").As<Napi::Object>();
          o.Set("name", v.text);
          return o;
        }
        case PickleKind::List:
        case PickleKind::Tuple:
        case PickleKind::Dict: break;
      }
      auto it = done.find(&v);
      if (it != done.end()) return it->second;
      if (!open.insert(&v).second) corrupt("an object contains itself");
      Napi::Object o;
      if (v.kind == PickleKind::Dict) {
        o = tagged("dict").As<Napi::Object>();
        o.Set("keys", list(v.items, 0, 2, depth));
        o.Set("values", list(v.items, 1, 2, depth));
      } else {
        o = tagged(v.kind == PickleKind::List ? "list" : "tuple").As<Napi::Object>();
        o.Set("items", list(v.items, 0, 1, depth));
      }
      open.erase(&v);
      done.emplace(&v, o);
      return o;
    }
  };

  Napi::Value Root(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, [&]() -> Napi::Value {
      Converter c{env, ckpt(env), {}, {}};
      return c.convert(ckpt(env).root(), 0);
    });
  }

  Napi::Value TensorInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, [&]() -> Napi::Value {
      const TorchTensor& t = tensor(info);
      auto dims = [&](const Shape& s) {
        Napi::Array a = Napi::Array::New(env, s.size());
        for (size_t i = 0; i < s.size(); ++i) a.Set(uint32_t(i), Napi::Number::New(env, double(s[i])));
        return a;
      };
      Napi::Object o = Napi::Object::New(env);
      o.Set("dtype", t.dtype);
      o.Set("shape", dims(t.shape));
      o.Set("strides", dims(t.strides));
      o.Set("offset", Napi::Number::New(env, double(t.offset)));
      o.Set("storageKey", ckpt(env).storages()[t.storage].key);
      o.Set("requiresGrad", Napi::Boolean::New(env, t.requires_grad));
      return o;
    });
  }

  // Row-major bytes (strided and offset tensors are gathered), owned by JS.
  Napi::Value ReadTensor(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, [&]() -> Napi::Value {
      const TorchTensor& t = tensor(info);
      size_t n = ckpt(env).byte_size(t);
      Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(env, n);
      if (n) ckpt(env).copy_bytes(t, static_cast<uint8_t*>(buf.Data()));
      return buf;
    });
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    ckpt_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<TorchCheckpoint> ckpt_;
};

}  // namespace

void register_torch_checkpoint(Napi::Env env, Napi::Object exports) {
  exports.Set("TorchCheckpoint", TorchCheckpointWrap::Define(env));
}

}  // namespace pia::addon
