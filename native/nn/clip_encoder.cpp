#include "clip_encoder.h"

#include <cmath>

namespace pia::nn {

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
