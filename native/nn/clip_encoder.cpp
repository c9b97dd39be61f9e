#include "clip_encoder.h"

#include <cmath>

#include "../core/errors.h"

namespace pia::nn {

void CLIPEncoderConfig::bad_config(const std::string& key, const std::string& why) const {
  throw_error("E_UNSUPPORTED", std::string(what_) + " config: '" + key + "' " + why, key);
}

int64_t CLIPEncoderConfig::positive_int(const JsonValue& j, const std::string& key, int64_t fallback) const {
  const JsonValue* v = j.get(key);
  if (!v || v->kind == JsonValue::Kind::Null) return fallback;
  if (!v->is_uint() || v->uinteger == 0 || v->uinteger > (1ull << 31)) bad_config(key, "must be a positive integer");
  return int64_t(v->uinteger);
}

void CLIPEncoderConfig::read_encoder_fields(const JsonValue& j) {
  hidden_size = positive_int(j, "hidden_size", hidden_size);
  intermediate_size = positive_int(j, "intermediate_size", intermediate_size);
  num_hidden_layers = positive_int(j, "num_hidden_layers", num_hidden_layers);
  num_attention_heads = positive_int(j, "num_attention_heads", num_attention_heads);
  if (const JsonValue* v = j.get("hidden_act"); v && v->kind != JsonValue::Kind::Null) {
    if (!v->is_string()) bad_config("hidden_act", "must be a string");
    hidden_act = v->string;
  }
  if (const JsonValue* v = j.get("layer_norm_eps"); v && v->kind != JsonValue::Kind::Null) {
    if (v->kind != JsonValue::Kind::Number || !(v->number > 0) || !std::isfinite(v->number)) {
      bad_config("layer_norm_eps", "must be a positive number");
    }
    layer_norm_eps = v->number;
  }
  // CLIPAttention raises for this too.
  if (hidden_size % num_attention_heads != 0) {
    bad_config("num_attention_heads", "must divide hidden_size (" + std::to_string(hidden_size) + ")");
  }
  (void)activation();
}

Activation CLIPEncoderConfig::activation() const {
  // gelu is the exact erf GELU (also what the h94 ViT-H/ViT-bigG image encoders use); gelu_new and
  // gelu_pytorch_tanh are both the tanh approximation.
  if (hidden_act == "quick_gelu") return Activation::QuickGELU;
  if (hidden_act == "gelu") return Activation::GELU;
  if (hidden_act == "gelu_new" || hidden_act == "gelu_pytorch_tanh") return Activation::GELUTanh;
  bad_config("hidden_act", "= '" + hidden_act + "' is not supported (quick_gelu, gelu, gelu_new, gelu_pytorch_tanh)");
}

void CLIPEncoderLayer::load(WeightStore& w, Backend& be, const std::string& p, int64_t d, int64_t ff, float eps) {
  layer_norm1.load(w, be, p + ".layer_norm1", d, eps);
  q_proj.load(w, be, p + ".self_attn.q_proj", d, d);
  k_proj.load(w, be, p + ".self_attn.k_proj", d, d);
  v_proj.load(w, be, p + ".self_attn.v_proj", d, d);
  out_proj.load(w, be, p + ".self_attn.out_proj", d, d);
  layer_norm2.load(w, be, p + ".layer_norm2", d, eps);
  fc1.load(w, be, p + ".mlp.fc1", d, ff);
  fc2.load(w, be, p + ".mlp.fc2", ff, d);
}

Tensor CLIPEncoderLayer::operator()(Backend& be, const Tensor& h, const AttentionParams& attn, Activation act) const {
  Tensor x = layer_norm1(be, h);
  Tensor r = out_proj(be, be.attention(q_proj(be, x), k_proj(be, x), v_proj(be, x), attn));
  be.add_(r, h);  // residual + attn_out (h itself may be kept as a hidden state, so never written)
  Tensor m = fc2(be, fc1(be, layer_norm2(be, r), act));
  be.add_(m, r);
  return m;
}

void CLIPEncoder::load(WeightStore& w, Backend& be, const std::string& prefix, int64_t n, int64_t d, int64_t ff,
                       int64_t heads, float eps, Activation activation, bool causal) {
  act = activation;
  attn.heads = int(heads);
  attn.scale = float(std::pow(double(d / heads), -0.5));
  attn.causal = causal;
  layers.resize(size_t(n));
  for (size_t i = 0; i < layers.size(); ++i) {
    layers[i].load(w, be, prefix + ".layers." + std::to_string(i), d, ff, eps);
  }
}

Tensor CLIPEncoder::operator()(Backend& be, const Tensor& input, std::vector<Tensor>* hidden_states) const {
  Tensor h = input;
  if (hidden_states) hidden_states->push_back(h);
  for (const CLIPEncoderLayer& l : layers) {
    h = l(be, h, attn, act);
    if (hidden_states) hidden_states->push_back(h);
  }
  return h;
}

}  // namespace pia::nn
