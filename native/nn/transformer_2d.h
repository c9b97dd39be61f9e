#pragma once
// diffusers' Transformer2DModel for continuous input (models/transformers/transformer_2d.py):
// GroupNorm(eps 1e-6) -> proj_in (1×1 conv or linear) -> BasicTransformerBlocks (self-attention,
// cross-attention on encoder_hidden_states, GEGLU feed-forward) -> proj_out -> + residual.
#include <string>
#include <vector>

#include "attention.h"

namespace pia::nn {

struct Transformer2DModelConfig {
  int num_attention_heads = 16;
  int64_t attention_head_dim = 88;
  int64_t in_channels = 0;
  int num_layers = 1;
  int64_t cross_attention_dim = 0;
  int norm_num_groups = 32;
  bool use_linear_projection = false;
  bool attention_bias = false;
};

struct Transformer2DModel {
  GroupNorm norm;
  Linear proj_in, proj_out;  // 1×1 conv weights are held as [out, in] linears (same math)
  std::vector<BasicTransformerBlock> transformer_blocks;

  void load(WeightStore& w, Backend& be, const std::string& prefix, const Transformer2DModelConfig& cfg);
  // x [N, C, H, W], encoder_hidden_states [N, S, cross_attention_dim].
  Tensor operator()(Backend& be, const Tensor& x, const Tensor& encoder_hidden_states) const;
};

// A 1×1 conv weight [out, in, 1, 1] bound as a Linear [out, in] (proj_in/proj_out when
// use_linear_projection is false).
void load_conv1x1_as_linear(Linear& l, WeightStore& w, Backend& be, const std::string& prefix, int64_t in,
                            int64_t out);

}  // namespace pia::nn
