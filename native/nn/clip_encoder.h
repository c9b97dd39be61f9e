#pragma once
// transformers' CLIPEncoder (modeling_clip.py, v4.38): pre-LN layers of multi-head self-attention
// (q scaled by head_dim^-0.5) and a two-layer MLP, each with a residual. Shared by CLIPTextModel
// (causal mask) and CLIPVisionModelWithProjection (no mask).
#include <cstdint>
#include <string>
#include <vector>

#include "../core/json.h"
#include "layers.h"

namespace pia::nn {

// The encoder fields transformers' CLIPTextConfig and CLIPVisionConfig share. The defaults are the
// text tower's; CLIPVisionConfig sets its own in its constructor.
struct CLIPEncoderConfig {
  int64_t hidden_size = 512;
  int64_t intermediate_size = 2048;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 8;
  std::string hidden_act = "quick_gelu";
  double layer_norm_eps = 1e-5;

  // transformers' ACT2FN names; anything else is E_UNSUPPORTED.
  Activation activation() const;

 protected:
  // `what` ("text encoder", "image encoder") names the model in E_UNSUPPORTED messages.
  explicit CLIPEncoderConfig(const char* what) : what_(what) {}
  // Reads the shared fields of `j` over the current values and checks them (heads divide the width,
  // a known activation).
  void read_encoder_fields(const JsonValue& j);
  [[noreturn]] void bad_config(const std::string& key, const std::string& why) const;
  // A positive integer field, or `fallback` when absent or null.
  int64_t positive_int(const JsonValue& j, const std::string& key, int64_t fallback) const;

 private:
  const char* what_;
};

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
