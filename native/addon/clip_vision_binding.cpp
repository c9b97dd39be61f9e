// clipVisionModel.{load, forward, dispose}: lib/models/clip_vision_model.ts validates the pixel
// values; this layer runs native/nn/clip_vision_model off the JS thread and packs the tensors.
#include <napi.h>

#include <memory>

#include "../nn/clip_vision_model.h"
#include "async.h"
#include "bindings.h"
#include "js_errors.h"
#include "model_handle.h"
#include "placement.h"
#include "tensor_js.h"

namespace pia::addon {

namespace {

using nn::CLIPVisionConfig;
using nn::CLIPVisionModelWithProjection;
using nn::CLIPVisionOutput;

const napi_type_tag kClipVisionTag = {0x1f6a2c8e94b03d57ull, 0x84e2d91c0b7f5a36ull};

Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto args = std::make_shared<LoadArgs>(load_args(info, "clipVisionModel.load"));
    const Placement place = placement_arg(info, 2, "clipVisionModel.load");
    auto model = std::make_shared<std::shared_ptr<const CLIPVisionModelWithProjection>>();
    auto backend = std::make_shared<std::shared_ptr<Backend>>();
    return run_async(
        env,
        [args, model, backend, place] {
          CLIPVisionConfig config = CLIPVisionConfig::from_json(parse_config(args->config_json));
          WeightStore store;
          store.set_label("image_encoder");
          add_weight_files(store, args->weight_paths);
          *backend = placement_backend(place);
          *model = std::make_shared<const CLIPVisionModelWithProjection>(config, store, *backend);
        },
        [model, backend](Napi::Env e) { return wrap_model<CLIPVisionModelWithProjection>(e, *model, &kClipVisionTag, *backend); });
  });
}

// forward(handle, pixelValues: Tensor, outputHiddenStates: boolean)
//   -> { imageEmbeds, lastHiddenState, hiddenStates? }
Napi::Value Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 3 || !info[2].IsBoolean()) {
      throw type_error(env, "clipVisionModel.forward(handle, pixelValues, outputHiddenStates: boolean)");
    }
    auto model = live_model<CLIPVisionModelWithProjection>(env, info[0], &kClipVisionTag, "clipVisionModel.forward");
    auto pixels = std::make_shared<Tensor>(tensor_from_js(env, info[1], "clipVisionModel.forward: pixelValues"));
    const bool hidden = info[2].As<Napi::Boolean>().Value();
    auto out = std::make_shared<CLIPVisionOutput>();
    return run_async(
        env, [=] { *out = model->forward(*pixels, hidden); },
        [out, hidden](Napi::Env e) -> Napi::Value {
          Napi::Object o = Napi::Object::New(e);
          o.Set("imageEmbeds", tensor_to_js(e, out->image_embeds));
          o.Set("lastHiddenState", tensor_to_js(e, out->last_hidden_state));
          if (hidden) {
            Napi::Array hs = Napi::Array::New(e, out->hidden_states.size());
            for (size_t i = 0; i < out->hidden_states.size(); ++i) hs.Set(uint32_t(i), tensor_to_js(e, out->hidden_states[i]));
            o.Set("hiddenStates", hs);
          }
          return o;
        });
  });
}

Napi::Value Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1) throw type_error(env, "clipVisionModel.dispose(handle)");
    model_handle<CLIPVisionModelWithProjection>(env, info[0], &kClipVisionTag, "clipVisionModel.dispose").model.reset();
    return env.Undefined();
  });
}

Napi::Value SetResident(const Napi::CallbackInfo& info) {
  return set_resident<CLIPVisionModelWithProjection>(info, &kClipVisionTag, "clipVisionModel.setResident");
}

}  // namespace

void register_clip_vision(Napi::Env env, Napi::Object exports) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("load", Napi::Function::New(env, Load, "load"));
  o.Set("forward", Napi::Function::New(env, Forward, "forward"));
  o.Set("dispose", Napi::Function::New(env, Dispose, "dispose"));
  o.Set("setResident", Napi::Function::New(env, SetResident, "setResident"));
  exports.Set("clipVisionModel", o);
}

}  // namespace pia::addon
