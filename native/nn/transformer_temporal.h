#pragma once
// diffusers' TransformerTemporalModel as the AnimateDiff/PIA motion modules build it
// (models/transformers/transformer_temporal.py): the GroupNorm sees the video as (B, C, F, H, W),
// so its statistics run over C/groups × F × H × W per sample; then every pixel's F frames form a
// sequence for BasicTransformerBlocks with two temporal self-attentions and sinusoidal positions.
#include <string>
#include <vector>

#include "attention.h"

namespace pia::nn {

struct TransformerTemporalModelConfig {
  int num_attention_heads = 8;
  int64_t attention_head_dim = 40;
  int64_t in_channels = 0;
  int num_layers = 1;
  int norm_num_groups = 32;
  int64_t max_seq_length = 32;  // num_positional_embeddings
};

struct TransformerTemporalModel {
  GroupNorm norm;
  Linear proj_in, proj_out;
  std::vector<BasicTransformerBlock> transformer_blocks;

  void load(WeightStore& w, Backend& be, const std::string& prefix, const TransformerTemporalModelConfig& cfg);
  // x [B·F, C, H, W] (frame-minor) -> same shape.
  Tensor operator()(Backend& be, const Tensor& x, int64_t num_frames) const;
};

}  // namespace pia::nn
