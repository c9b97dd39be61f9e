// unetMotionModel.{load, config, forward, dispose}: lib/models/unet_motion_model.ts validates the
// arguments and holds the FreeU switch; this layer runs native/nn/unet_motion_model off the JS thread.
#include <napi.h>

#include <memory>

#include "../nn/unet_motion_model.h"
#include "async.h"
#include "bindings.h"
#include "ip_adapter_handle.h"
#include "js_errors.h"
#include "lora_js.h"
#include "model_handle.h"
#include "placement.h"
#include "tensor_js.h"

namespace pia::addon {

namespace {

using nn::FreeUParams;
using nn::UNetMotionModel;
using nn::UNetMotionModelConfig;

const napi_type_tag kUNetMotionTag = {0x7c1e52a9b3d04f6eull, 0x9a08c4f2e61d3b75ull};

// (unetConfigJson, unetWeightPaths, adapterConfigJson, adapterWeightPaths)
Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 4 || !info[0].IsString() || !info[2].IsString()) {
      throw type_error(env,
                       "unetMotionModel.load(unetConfigJson, unetWeightPaths, adapterConfigJson, adapterWeightPaths)");
    }
    struct Args {
      std::string unet_config, adapter_config;
      std::vector<WeightSource> unet_paths, adapter_paths;
    };
    auto args = std::make_shared<Args>();
    args->unet_config = info[0].As<Napi::String>().Utf8Value();
    args->unet_paths = weight_sources(env, info[1], "unetWeightPaths");
    args->adapter_config = info[2].As<Napi::String>().Utf8Value();
    args->adapter_paths = weight_sources(env, info[3], "adapterWeightPaths");
    const Placement place = placement_arg(info, 4, "unetMotionModel.load");
    auto model = std::make_shared<std::shared_ptr<const UNetMotionModel>>();
    auto backend = std::make_shared<std::shared_ptr<Backend>>();
    return run_async(
        env,
        [args, model, backend, place] {
          UNetMotionModelConfig config =
              UNetMotionModelConfig::from_unet2d(parse_config(args->unet_config), parse_config(args->adapter_config));
          WeightStore unet, adapter;
          unet.set_label("unet");
          adapter.set_label("motion_adapter");
          add_weight_files(unet, args->unet_paths);
          add_weight_files(adapter, args->adapter_paths);
          *backend = placement_backend(place);
          *model = std::make_shared<const UNetMotionModel>(*backend, config, unet, adapter);
        },
        [model, backend](Napi::Env e) { return wrap_model<UNetMotionModel>(e, *model, &kUNetMotionTag, *backend); });
  });
}

Napi::Value Config(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1) throw type_error(env, "unetMotionModel.config(handle)");
    auto model = live_model<UNetMotionModel>(env, info[0], &kUNetMotionTag, "unetMotionModel.config");
    return Napi::String::New(env, model->config().to_json());
  });
}

float number_field(Napi::Env env, const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw type_error(env, std::string("unetMotionModel.forward: freeU.") + key + " must be a number");
  return v.As<Napi::Number>().FloatValue();
}

// (handle, sample: Tensor, timestep: number, encoderHiddenStates: Tensor, freeU: {s1, s2, b1, b2} | null,
//  cancelToken?)
Napi::Value Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 5 || !info[2].IsNumber()) {
      throw type_error(env, "unetMotionModel.forward(handle, sample, timestep: number, encoderHiddenStates, freeU | null)");
    }
    struct Call {
      std::shared_ptr<const UNetMotionModel> model;
      Tensor sample, ehs, out;
      float timestep = 0;
      FreeUParams freeu;
      CancelFlag cancel;
      float lora_scale = 1.f;
      std::shared_ptr<const nn::IPAdapter> ip;  // with its image embeds and scale (ip_adapter.h)
      Tensor image_embeds;
      float ip_scale = 1.f;
    };
    auto call = std::make_shared<Call>();
    call->model = live_model<UNetMotionModel>(env, info[0], &kUNetMotionTag, "unetMotionModel.forward");
    call->sample = tensor_from_js(env, info[1], "unetMotionModel.forward: sample");
    call->timestep = info[2].As<Napi::Number>().FloatValue();
    call->ehs = tensor_from_js(env, info[3], "unetMotionModel.forward: encoderHiddenStates");
    if (info[4].IsObject()) {
      Napi::Object f = info[4].As<Napi::Object>();
      call->freeu = FreeUParams{number_field(env, f, "s1"), number_field(env, f, "s2"), number_field(env, f, "b1"),
                                number_field(env, f, "b2")};
    } else if (!info[4].IsNull() && !info[4].IsUndefined()) {
      throw type_error(env, "unetMotionModel.forward: freeU must be an object or null");
    }
    call->cancel = info.Length() > 5 ? cancel_flag(env, info[5]) : nullptr;
    if (info.Length() > 6 && info[6].IsNumber()) call->lora_scale = info[6].As<Napi::Number>().FloatValue();
    // ip: { adapter, imageEmbeds, scale } | null
    if (info.Length() > 7 && info[7].IsObject()) {
      Napi::Object ip = info[7].As<Napi::Object>();
      call->ip = live_ip_adapter(env, ip.Get("adapter"), "unetMotionModel.forward: ip.adapter");
      call->image_embeds = tensor_from_js(env, ip.Get("imageEmbeds"), "unetMotionModel.forward: ip.imageEmbeds");
      if (!ip.Get("scale").IsNumber()) throw type_error(env, "unetMotionModel.forward: ip.scale must be a number");
      call->ip_scale = ip.Get("scale").As<Napi::Number>().FloatValue();
    }
    return run_async(
        env,
        [call] {
          nn::IpCall ip;
          if (call->ip) {
            ip = nn::make_ip_call(*call->ip, call->model->ip_attention_sites(), call->image_embeds, call->sample.size(0),
                                  call->sample.dim() == 5 ? call->sample.size(2) : 1, call->ip_scale);
          }
          nn::IpScope scope(call->ip ? &ip : nullptr);
          call->out = call->model->forward(call->sample, call->timestep, call->ehs, call->freeu, call->cancel.get(),
                                           call->lora_scale);
        },
        [call](Napi::Env e) -> Napi::Value { return tensor_to_js(e, call->out); });
  });
}

Napi::Value LoraTargets(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1) throw type_error(env, "unetMotionModel.loraTargets(handle)");
    return lora_targets_to_js(env, live_model<UNetMotionModel>(env, info[0], &kUNetMotionTag, "unetMotionModel.loraTargets")->lora_targets());
  });
}

// setLora(handle, contributions): the handle then points at a copy with these LoRA contributions.
Napi::Value SetLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 2) throw type_error(env, "unetMotionModel.setLora(handle, contributions)");
    auto contributions = std::make_shared<std::vector<nn::LoraContribution>>(
        lora_contributions_from_js(env, info[1], "unetMotionModel.setLora"));
    return swap_model_async<UNetMotionModel>(env, info[0], &kUNetMotionTag, "unetMotionModel.setLora",
                                             [contributions](const UNetMotionModel& m) { return m.with_lora(*contributions); });
  });
}

// ipAttentionSites(handle) -> [{name, hidden_size, cross_attention_dim}] of the cross-attention
// layers an IP-Adapter attaches to (ip_adapter.h), in load order.
Napi::Value IpAttentionSites(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1) throw type_error(env, "unetMotionModel.ipAttentionSites(handle)");
    auto model = live_model<UNetMotionModel>(env, info[0], &kUNetMotionTag, "unetMotionModel.ipAttentionSites");
    Napi::Array out = Napi::Array::New(env);
    uint32_t i = 0;
    for (const nn::IpAttnSite& site : model->ip_attention_sites()) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", site.name);
      o.Set("hidden_size", Napi::Number::New(env, double(site.hidden_size)));
      o.Set("cross_attention_dim", Napi::Number::New(env, double(site.cross_attention_dim)));
      out.Set(i++, o);
    }
    return out;
  });
}

Napi::Value Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1) throw type_error(env, "unetMotionModel.dispose(handle)");
    model_handle<UNetMotionModel>(env, info[0], &kUNetMotionTag, "unetMotionModel.dispose").model.reset();
    return env.Undefined();
  });
}

Napi::Value SetResident(const Napi::CallbackInfo& info) {
  return set_resident<UNetMotionModel>(info, &kUNetMotionTag, "unetMotionModel.setResident");
}

}  // namespace

void register_unet_motion(Napi::Env env, Napi::Object exports) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("load", Napi::Function::New(env, Load, "load"));
  o.Set("config", Napi::Function::New(env, Config, "config"));
  o.Set("forward", Napi::Function::New(env, Forward, "forward"));
  o.Set("dispose", Napi::Function::New(env, Dispose, "dispose"));
  o.Set("setResident", Napi::Function::New(env, SetResident, "setResident"));
  o.Set("ipAttentionSites", Napi::Function::New(env, IpAttentionSites, "ipAttentionSites"));
  o.Set("loraTargets", Napi::Function::New(env, LoraTargets, "loraTargets"));
  o.Set("setLora", Napi::Function::New(env, SetLora, "setLora"));
  o.Set("cancelToken", Napi::Function::New(env, make_cancel_token, "cancelToken"));
  o.Set("cancel", Napi::Function::New(env, cancel_token, "cancel"));
  exports.Set("unetMotionModel", o);
}

}  // namespace pia::addon
