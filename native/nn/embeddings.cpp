#include "embeddings.h"

#include <cmath>

#include "../core/errors.h"
#include "resnet.h"

namespace pia::nn {

void TimestepEmbedding::load(WeightStore& w, Backend& be, const std::string& prefix, int64_t in_channels,
                             int64_t time_embed_dim, const std::string& act_fn) {
  act = activation_from_name(act_fn);
  linear_1.load(w, be, prefix + ".linear_1", in_channels, time_embed_dim);
  linear_2.load(w, be, prefix + ".linear_2", time_embed_dim, time_embed_dim);
}

void SinusoidalPositionalEmbedding::load(WeightStore& w, Backend& be, const std::string& prefix, int64_t embed_dim,
                                         int64_t max_len) {
  max_seq_length = max_len;
  const std::string key = prefix + ".pe";
  if (w.has(key)) {
    pe = be.upload(w.get(key, {1, max_len, embed_dim}).to(DType::F32));
    return;
  }
  // diffusers: div_term = exp(arange(0, D, 2) * (-log(10000) / D)); pe[:, 0::2] = sin(pos * div_term),
  // pe[:, 1::2] = cos(pos * div_term), all float32.
  Tensor host = Tensor::zeros({1, max_len, embed_dim});
  float* p = host.data<float>();
  const float factor = float(-std::log(10000.0) / double(embed_dim));
  for (int64_t pos = 0; pos < max_len; ++pos) {
    for (int64_t i = 0; i < embed_dim; i += 2) {
      const float div = std::exp(float(i) * factor);
      const float arg = float(pos) * div;
      p[pos * embed_dim + i] = std::sin(arg);
      if (i + 1 < embed_dim) p[pos * embed_dim + i + 1] = std::cos(arg);
    }
  }
  pe = be.from_host(host);
}

Tensor SinusoidalPositionalEmbedding::positions(Backend& be, int64_t seq) const {
  if (seq > max_seq_length) {
    throw_error("E_INVALID_ARGUMENT", "sequence of " + std::to_string(seq) +
                                          " frames exceeds the motion modules' max_seq_length " +
                                          std::to_string(max_seq_length));
  }
  Tensor slice = pe.narrow(1, 0, seq);
  return slice.is_contiguous() ? slice : be.contiguous(slice);
}

Tensor SinusoidalPositionalEmbedding::after_norm(Backend& be, const LayerNorm& norm, const Tensor& x,
                                                 int64_t frames) const {
  const int64_t seq = frames > 0 ? frames : x.size(1);
  return be.layer_norm_add(x, norm.weight, norm.bias, norm.eps, positions(be, seq).reshape({seq, x.size(2)}),
                           frames > 0 ? x.size(1) : 1);
}

}  // namespace pia::nn
