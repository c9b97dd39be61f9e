#include "attention_processor.h"

#include <cmath>

#include "../core/errors.h"

namespace pia::nn {

void Attention::load(WeightStore& w, Backend& be, const std::string& prefix, const AttentionConfig& cfg) {
  const int64_t inner = cfg.out_dim ? cfg.out_dim : cfg.dim_head * cfg.heads;
  const int64_t out_dim = cfg.out_dim ? cfg.out_dim : cfg.query_dim;
  const int64_t cross = cfg.cross_attention_dim ? cfg.cross_attention_dim : cfg.query_dim;
  heads = cfg.out_dim ? int(cfg.out_dim / cfg.dim_head) : cfg.heads;
  PIA_CHECK(heads > 0 && inner % heads == 0, "E_UNSUPPORTED",
            prefix + ": attention inner dim " + std::to_string(inner) + " is not divisible by " + std::to_string(heads) +
                " heads");
  scale = cfg.scale_qk ? float(1.0 / std::sqrt(double(cfg.dim_head))) : 1.f;
  residual_connection = cfg.residual_connection;
  rescale_output_factor = cfg.rescale_output_factor;
  has_group_norm = cfg.norm_num_groups > 0;
  if (has_group_norm) group_norm.load(w, be, prefix + ".group_norm", cfg.query_dim, cfg.norm_num_groups, cfg.eps);
  to_q.load(w, be, prefix + ".to_q", cfg.query_dim, inner, cfg.bias);
  to_k.load(w, be, prefix + ".to_k", cross, inner, cfg.bias);
  to_v.load(w, be, prefix + ".to_v", cross, inner, cfg.bias);
  to_out.load(w, be, prefix + ".to_out.0", inner, out_dim, cfg.out_bias);
}

Tensor Attention::attend(Backend& be, const Tensor& x, const Tensor& context, int64_t frames) const {
  Tensor q = to_q(be, x);
  Tensor k = to_k(be, context);
  Tensor v = to_v(be, context);
  AttentionParams p;
  p.heads = heads;
  p.scale = scale;
  return to_out(be, frames > 0 ? be.temporal_attention(q, k, v, frames, p) : be.attention(q, k, v, p));
}

Tensor Attention::operator()(Backend& be, const Tensor& hidden, const Tensor& encoder_hidden_states,
                             int64_t frames) const {
  if (frames > 0) {
    PIA_CHECK(hidden.dim() == 3 && !encoder_hidden_states.defined() && !has_group_norm && !residual_connection &&
                  rescale_output_factor == 1.f,
              "E_INVALID_ARGUMENT", "Attention: the frame-major layout is for plain temporal self-attention");
    return attend(be, hidden, hidden, frames);
  }
  const bool image = hidden.dim() == 4;
  Tensor seq;
  if (image) {
    const int64_t B = hidden.size(0), C = hidden.size(1), HW = hidden.size(2) * hidden.size(3);
    // GroupNorm of the (B, C, H·W) view equals GroupNorm of NCHW, so normalise before flattening.
    Tensor h = has_group_norm ? group_norm(be, hidden) : hidden;
    seq = be.contiguous(h.reshape({B, C, HW}).permute({0, 2, 1}));
  } else if (has_group_norm) {
    Tensor t = be.contiguous(hidden.permute({0, 2, 1}));
    seq = be.contiguous(group_norm(be, t).permute({0, 2, 1}));
  } else {
    seq = hidden;
  }
  Tensor out = attend(be, seq, encoder_hidden_states.defined() ? encoder_hidden_states : seq);
  if (image) {
    const int64_t B = hidden.size(0), C = out.size(2);
    out = be.contiguous(out.permute({0, 2, 1})).reshape({B, C, hidden.size(2), hidden.size(3)});
  }
  if (residual_connection) be.add_(out, hidden);
  // hidden_states / rescale_output_factor (reciprocal multiply: at most an ulp apart).
  if (rescale_output_factor != 1.f) out = be.affine(out, 1.f / rescale_output_factor);
  return out;
}

}  // namespace pia::nn
