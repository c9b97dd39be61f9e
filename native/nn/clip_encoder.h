#pragma once
// transformers' CLIPEncoder (modeling_clip.py, v4.38): pre-LN layers of multi-head self-attention
// (q scaled by head_dim^-0.5) and a two-layer MLP, each with a residual. Shared by CLIPTextModel
// (causal mask) and CLIPVisionModelWithProjection (no mask).
#include <string>
#include <vector>

#include "layers.h"

namespace pia::nn {

struct CLIPEncoderLayer {
  LayerNorm layer_norm1, layer_norm2;
  Linear q_proj, k_proj, v_proj, out_proj, fc1, fc2;
  // prefix: "<model>.encoder.layers.N"
  void load(WeightStore& w, Backend& be, const std::string& prefix, int64_t hidden, int64_t intermediate, float eps);
  Tensor operator()(Backend& be, const Tensor& h, const AttentionParams& attn, Activation act) const;
};

struct CLIPEncoder {
  std::vector<CLIPEncoderLayer> layers;
  AttentionParams attn;
  Activation act = Activation::QuickGELU;

  // prefix: "<model>.encoder"
  void load(WeightStore& w, Backend& be, const std::string& prefix, int64_t layers, int64_t hidden,
            int64_t intermediate, int64_t heads, float eps, Activation act, bool causal);
  // Runs the layers on h [B, S, hidden]. When `hidden_states` is given, it receives the input and
  // every layer's output (transformers' hidden_states tuple); the input tensor is never written.
  Tensor operator()(Backend& be, const Tensor& h, std::vector<Tensor>* hidden_states = nullptr) const;
};

}  // namespace pia::nn
