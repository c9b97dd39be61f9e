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
  const int64_t B = BF / num_frames, F = num_frames;
  // (B·F, C, H, W) -> (B, C, F, H, W) for the GroupNorm.
  Tensor v = be.contiguous(x.reshape({B, F, C, H, W}).permute({0, 2, 1, 3, 4}));
  v = norm(be, v);
  // -> (B, H, W, F, C) -> (B·H·W, F, C): the frames of each pixel are one sequence.
  Tensor h = be.contiguous(v.permute({0, 3, 4, 2, 1})).reshape({B * H * W, F, C});
  h = proj_in(be, h);
  for (const auto& blk : transformer_blocks) h = blk(be, h);
  h = proj_out(be, h);
  // (B, H, W, F, C) -> (B, F, C, H, W) -> (B·F, C, H, W), + residual.
  Tensor out = be.contiguous(h.reshape({B, H, W, F, C}).permute({0, 3, 4, 1, 2})).reshape({BF, C, H, W});
  be.add_(out, x);
  return out;
}

}  // namespace pia::nn
