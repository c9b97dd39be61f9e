#pragma once
// diffusers' `Attention` module with the classic AttnProcessor math (models/attention_processor.py,
// v0.26.3): to_q/to_k/to_v, per-head softmax(scale·q·kᵀ)·v, to_out.0. The VAE's mid-block variant
// adds a group_norm on [B, C, H, W] input, a residual connection and rescale_output_factor.
#include <string>

#include "layers.h"

namespace pia::nn {

struct AttentionConfig {
  int64_t query_dim = 0;
  int64_t cross_attention_dim = 0;  // 0: query_dim (self-attention)
  int heads = 8;
  int64_t dim_head = 64;
  bool bias = false;      // to_q/to_k/to_v bias
  bool out_bias = true;   // to_out.0 bias
  int64_t out_dim = 0;    // 0: query_dim; when set, heads = out_dim / dim_head as in diffusers
  int norm_num_groups = 0;  // 0: no group_norm
  float eps = 1e-5f;        // group_norm eps
  bool residual_connection = false;
  float rescale_output_factor = 1.f;
  bool scale_qk = true;
};

struct Attention {
  Linear to_q, to_k, to_v, to_out;
  GroupNorm group_norm;
  bool has_group_norm = false, residual_connection = false;
  int heads = 1;
  float scale = 1.f, rescale_output_factor = 1.f;

  void load(WeightStore& w, Backend& be, const std::string& prefix, const AttentionConfig& cfg);
  // hidden [B, S, query_dim] (or [B, C, H, W], flattened to [B, H·W, C] and back as AttnProcessor
  // does); encoder_hidden_states [B, Sk, cross_attention_dim], undefined for self-attention.
  // frames > 0: hidden is the motion modules' frame-major [B·F, HW, C] and the F frames of every
  // pixel are the sequence (self-attention only; Backend::temporal_attention, no permutes).
  Tensor operator()(Backend& be, const Tensor& hidden, const Tensor& encoder_hidden_states = {},
                    int64_t frames = 0) const;
  // The attention core on already-normed sequences: to_out(attn(to_q(x), to_k(ctx), to_v(ctx))).
  Tensor attend(Backend& be, const Tensor& x, const Tensor& context, int64_t frames = 0) const;
};

}  // namespace pia::nn
