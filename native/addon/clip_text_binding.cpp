// clipTextModel.{load, forward, dispose}: lib/models/clip_text_model.ts validates the ids and
// options; this layer unpacks them, runs native/nn/clip_text_model off the JS thread, packs tensors.
#include <napi.h>

#include <memory>
#include <vector>

#include "../nn/clip_text_model.h"
#include "async.h"
#include "bindings.h"
#include "js_errors.h"
#include "lora_js.h"
#include "model_handle.h"
#include "placement.h"
#include "tensor_js.h"

namespace pia::addon {

namespace {

using nn::CLIPTextConfig;
using nn::CLIPTextModel;
using nn::CLIPTextOutput;

const napi_type_tag kClipTag = {0x7c3a1f0e5b2d4c69ull, 0x9e8d7c6b5a4f3e21ull};

Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto args = std::make_shared<LoadArgs>(load_args(info, "clipTextModel.load"));
    const Placement place = placement_arg(info, 2, "clipTextModel.load");
    auto model = std::make_shared<std::shared_ptr<const CLIPTextModel>>();
    auto backend = std::make_shared<std::shared_ptr<Backend>>();
    return run_async(
        env,
        [args, model, backend, place] {
          CLIPTextConfig config = CLIPTextConfig::from_json(parse_config(args->config_json));
          WeightStore store;
          store.set_label("text_encoder");
          add_weight_files(store, args->weight_paths);
          *backend = placement_backend(place);
          *model = std::make_shared<const CLIPTextModel>(config, store, *backend);
        },
        [model, backend](Napi::Env e) { return wrap_model<CLIPTextModel>(e, *model, &kClipTag, *backend); });
  });
}

// forward(handle, ids: Int32Array, batch, seqLen, clipSkip (-1: none), outputHiddenStates, loraScale?)
Napi::Value Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 6 || !info[1].IsTypedArray() ||
        info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array || !info[2].IsNumber() ||
        !info[3].IsNumber() || !info[4].IsNumber() || !info[5].IsBoolean()) {
      throw type_error(env, "clipTextModel.forward(handle, ids: Int32Array, batch, seqLen, clipSkip, outputHiddenStates)");
    }
    auto model = live_model<CLIPTextModel>(env, info[0], &kClipTag, "clipTextModel.forward");
    Napi::Int32Array arr = info[1].As<Napi::Int32Array>();
    auto ids = std::make_shared<std::vector<int64_t>>(arr.Data(), arr.Data() + arr.ElementLength());
    const int64_t batch = info[2].As<Napi::Number>().Int64Value();
    const int64_t seq = info[3].As<Napi::Number>().Int64Value();
    const int clip_skip = info[4].As<Napi::Number>().Int32Value();
    const bool hidden = info[5].As<Napi::Boolean>().Value();
    const float lora_scale = info.Length() > 6 && info[6].IsNumber() ? info[6].As<Napi::Number>().FloatValue() : 1.f;
    auto out = std::make_shared<CLIPTextOutput>();
    return run_async(
        env, [=] { *out = model->forward(*ids, batch, seq, hidden, clip_skip, lora_scale); },
        [out, hidden](Napi::Env e) -> Napi::Value {
          Napi::Object o = Napi::Object::New(e);
          o.Set("lastHiddenState", tensor_to_js(e, out->last_hidden_state));
          o.Set("poolerOutput", tensor_to_js(e, out->pooler_output));
          if (hidden) {
            Napi::Array hs = Napi::Array::New(e, out->hidden_states.size());
            for (size_t i = 0; i < out->hidden_states.size(); ++i) hs.Set(uint32_t(i), tensor_to_js(e, out->hidden_states[i]));
            o.Set("hiddenStates", hs);
          }
          return o;
        });
  });
}

Napi::Value LoraTargets(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1) throw type_error(env, "clipTextModel.loraTargets(handle)");
    return lora_targets_to_js(env, live_model<CLIPTextModel>(env, info[0], &kClipTag, "clipTextModel.loraTargets")->lora_targets());
  });
}

// setLora(handle, contributions): the handle then points at a copy with these LoRA contributions.
Napi::Value SetLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 2) throw type_error(env, "clipTextModel.setLora(handle, contributions)");
    auto contributions = std::make_shared<std::vector<nn::LoraContribution>>(
        lora_contributions_from_js(env, info[1], "clipTextModel.setLora"));
    return swap_model_async<CLIPTextModel>(env, info[0], &kClipTag, "clipTextModel.setLora",
                                           [contributions](const CLIPTextModel& m) { return m.with_lora(*contributions); });
  });
}

// addTokens(handle, rows: Tensor [n, hidden]): textual inversion's new token embedding rows.
Napi::Value AddTokens(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 2) throw type_error(env, "clipTextModel.addTokens(handle, rows)");
    Tensor rows = tensor_from_js(env, info[1], "clipTextModel.addTokens: rows");
    return swap_model_async<CLIPTextModel>(env, info[0], &kClipTag, "clipTextModel.addTokens",
                                           [rows](const CLIPTextModel& m) { return m.with_added_tokens(rows); });
  });
}

// tokenEmbeddingRows(handle, ids: Int32Array) -> Tensor [n, hidden]
Napi::Value TokenEmbeddingRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      throw type_error(env, "clipTextModel.tokenEmbeddingRows(handle, ids: Int32Array)");
    }
    auto model = live_model<CLIPTextModel>(env, info[0], &kClipTag, "clipTextModel.tokenEmbeddingRows");
    Napi::Int32Array arr = info[1].As<Napi::Int32Array>();
    return tensor_to_js(env, model->token_embedding_rows(std::vector<int64_t>(arr.Data(), arr.Data() + arr.ElementLength())));
  });
}

Napi::Value Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1) throw type_error(env, "clipTextModel.dispose(handle)");
    model_handle<CLIPTextModel>(env, info[0], &kClipTag, "clipTextModel.dispose").model.reset();
    return env.Undefined();
  });
}

Napi::Value SetResident(const Napi::CallbackInfo& info) {
  return set_resident<CLIPTextModel>(info, &kClipTag, "clipTextModel.setResident");
}

}  // namespace

void register_clip_text(Napi::Env env, Napi::Object exports) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("load", Napi::Function::New(env, Load, "load"));
  o.Set("forward", Napi::Function::New(env, Forward, "forward"));
  o.Set("dispose", Napi::Function::New(env, Dispose, "dispose"));
  o.Set("setResident", Napi::Function::New(env, SetResident, "setResident"));
  o.Set("loraTargets", Napi::Function::New(env, LoraTargets, "loraTargets"));
  o.Set("setLora", Napi::Function::New(env, SetLora, "setLora"));
  o.Set("addTokens", Napi::Function::New(env, AddTokens, "addTokens"));
  o.Set("tokenEmbeddingRows", Napi::Function::New(env, TokenEmbeddingRows, "tokenEmbeddingRows"));
  exports.Set("clipTextModel", o);
}

}  // namespace pia::addon
