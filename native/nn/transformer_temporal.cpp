#include "transformer_temporal.h"

#include "../core/errors.h"

namespace pia::nn {

void TransformerTemporalModel::load(WeightStore& w, Backend& be, const std::string& prefix,
                                    const TransformerTemporalModelConfig& cfg) {
  const int64_t inner = int64_t(cfg.num_attention_heads) * cfg.attention_head_dim;
  norm.load(w, be, prefix + ".norm", cfg.in_channels, cfg.norm_num_groups, 1e-6f);
  proj_in.load(w, be, prefix + ".proj_in", cfg.in_channels, inner);
  proj_out.load(w, be, prefix + ".proj_out", inner, cfg.in_channels);
  BasicTransformerBlockConfig b;
  b.dim = inner;
  b.heads = cfg.num_attention_heads;
  b.head_dim = cfg.attention_head_dim;
  b.double_self_attention = true;  // attn2 is a second temporal self-attention
  b.num_positional_embeddings = cfg.max_seq_length;
  transformer_blocks.resize(size_t(cfg.num_layers));
  for (int i = 0; i < cfg.num_layers; ++i) {
    transformer_blocks[size_t(i)].load(w, be, prefix + ".transformer_blocks." + std::to_string(i), b);
  }
}

Tensor TransformerTemporalModel::operator()(Backend& be, const Tensor& x, int64_t num_frames) const {
  const int64_t BF = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  PIA_CHECK(num_frames > 0 && BF % num_frames == 0, "E_INVALID_ARGUMENT",
            "TransformerTemporalModel: batch·frames is not a multiple of num_frames");
  const int64_t F = num_frames, HW = H * W;
  // diffusers permutes to (B, C, F, H, W) for the GroupNorm and on to (B·H·W, F, C) so that each
  // pixel's frames form a sequence. Here the activations stay frame-major: the GroupNorm pools the
  // frames in place, one transpose makes tokens [B·F, HW, C], and the attentions read each
  // pixel's frames through strides (Backend::temporal_attention). Same math, two copies fewer.
  Tensor v = norm.frames(be, x, F);
  Tensor h = be.contiguous(v.reshape({BF, C, HW}).permute({0, 2, 1}));
  h = proj_in(be, h);
  for (const auto& blk : transformer_blocks) h = blk(be, h, Tensor(), F);
  h = proj_out(be, h);
  // [B·F, HW, C] -> (B·F, C, H, W), + residual.
  Tensor out = be.contiguous(h.permute({0, 2, 1})).reshape({BF, C, H, W});
  be.add_(out, x);
  return out;
}

}  // namespace pia::nn
