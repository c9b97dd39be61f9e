#pragma once
// torch.nn building blocks bound to diffusers keys: each load() takes the key prefix and the
// sizes the config implies, so a checkpoint of another shape fails on the first mismatching key.
#include <string>

#include "../ops/backend.h"
#include "lora.h"
#include "weight_store.h"

namespace pia::nn {

struct Linear {
  Tensor weight, bias;  // bias undefined when the layer has none
  int64_t in = 0, out = 0;
  int lora_slot = -1;  // lora.h: -1 when the network records no LoRA targets
  void load(WeightStore& w, Backend& be, const std::string& prefix, int64_t in_features, int64_t out_features,
            bool has_bias = true) {
    in = in_features;
    out = out_features;
    Tensor host = w.get(prefix + ".weight", {out, in});
    weight = be.upload(host);
    if (has_bias) bias = be.upload(w.get(prefix + ".bias", {out}));
    lora_slot = lora_register({prefix, LoraTargetKind::Linear, in, out, 1, {}, true, host});
  }
  Tensor operator()(Backend& be, const Tensor& x, Activation act = Activation::None) const {
    float scale = 1.f;
    if (const LoraSlotState* l = lora_slot >= 0 ? lora_active(lora_slot, &scale) : nullptr) {
      return lora_linear(be, x, weight, bias, act, *l, scale);
    }
    return be.linear(x, weight, bias, act);
  }
};

struct Conv2d {
  Tensor weight, bias;
  Conv2dParams params;
  int lora_slot = -1;
  void load(WeightStore& w, Backend& be, const std::string& prefix, int64_t cin, int64_t cout, int64_t k,
            Conv2dParams p, bool has_bias = true) {
    params = p;
    Tensor host = w.get(prefix + ".weight", {cout, cin, k, k});
    weight = be.upload(host);
    if (has_bias) bias = be.upload(w.get(prefix + ".bias", {cout}));
    lora_slot = lora_register({prefix, LoraTargetKind::Conv2d, cin, cout, k, p, true, host});
  }
  Tensor operator()(Backend& be, const Tensor& x) const {
    float scale = 1.f;
    if (const LoraSlotState* l = lora_slot >= 0 ? lora_active(lora_slot, &scale) : nullptr) {
      return lora_conv2d(be, x, weight, bias, params, *l, scale);
    }
    return be.conv2d(x, weight, bias, params);
  }
};

struct GroupNorm {
  Tensor weight, bias;
  int groups = 32;
  float eps = 1e-5f;
  void load(WeightStore& w, Backend& be, const std::string& prefix, int64_t channels, int num_groups, float epsilon) {
    groups = num_groups;
    eps = epsilon;
    weight = be.upload(w.get(prefix + ".weight", {channels}));
    bias = be.upload(w.get(prefix + ".bias", {channels}));
  }
  Tensor operator()(Backend& be, const Tensor& x, Activation act = Activation::None) const {
    return be.group_norm(x, groups, weight, bias, eps, act);
  }
  // x [B·frames, C, *] normalised as the (B, C, frames, *) video it is (Backend::group_norm_frames).
  Tensor frames(Backend& be, const Tensor& x, int64_t num_frames) const {
    return be.group_norm_frames(x, num_frames, groups, weight, bias, eps);
  }
};

struct LayerNorm {
  Tensor weight, bias;
  float eps = 1e-5f;
  void load(WeightStore& w, Backend& be, const std::string& prefix, int64_t dim, float epsilon) {
    eps = epsilon;
    weight = be.upload(w.get(prefix + ".weight", {dim}));
    bias = be.upload(w.get(prefix + ".bias", {dim}));
  }
  Tensor operator()(Backend& be, const Tensor& x) const { return be.layer_norm(x, weight, bias, eps); }
};

}  // namespace pia::nn
