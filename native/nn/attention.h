#pragma once
// diffusers' BasicTransformerBlock and FeedForward (models/attention.py, v0.26.3), with the
// norm_type "layer_norm" path the UNet's spatial and temporal transformers use.
#include <string>

#include "attention_processor.h"
#include "embeddings.h"

namespace pia::nn {

// FeedForward(dim, activation_fn="geglu"): net.0 = GEGLU(dim, 4·dim) projection, net.2 = Linear(4·dim, dim).
struct FeedForward {
  Linear proj, out;
  int64_t chunk_bytes = int64_t(256) << 20;  // budget for one chunk's GEGLU projection
  void load(WeightStore& w, Backend& be, const std::string& prefix, int64_t dim, const std::string& activation_fn,
            int64_t inner_dim = 0);
  // Rows are processed in chunks whose GEGLU projection stays under ~256 MiB (diffusers'
  // _chunked_feed_forward idea, always on): the feed-forward is row-wise, so the result is the
  // same, and a 512×512, 16-frame batch needs ~2 GiB less at its peak.
  Tensor operator()(Backend& be, const Tensor& x) const;
};

struct BasicTransformerBlockConfig {
  int64_t dim = 0;
  int heads = 8;
  int64_t head_dim = 64;
  int64_t cross_attention_dim = 0;  // 0: none
  bool double_self_attention = false;
  bool attention_bias = false;
  std::string activation_fn = "geglu";
  float norm_eps = 1e-5f;
  // positional_embeddings="sinusoidal" when > 0 (the motion modules).
  int64_t num_positional_embeddings = 0;
};

struct BasicTransformerBlock {
  LayerNorm norm1, norm2, norm3;
  Attention attn1, attn2;
  FeedForward ff;
  SinusoidalPositionalEmbedding pos_embed;
  bool has_attn2 = false, attn2_is_cross = false, has_pos_embed = false;
  int ip_slot = -1;  // ip_adapter.h: the IP-Adapter site of a cross-attention attn2 (-1: none recorded)

  void load(WeightStore& w, Backend& be, const std::string& prefix, const BasicTransformerBlockConfig& cfg);
  // x [N, S, dim]; encoder_hidden_states [N, Sk, cross_attention_dim] for the cross-attention attn2.
  // frames > 0: x is the motion modules' frame-major [B·F, HW, dim]; the attentions and positions
  // run over the F frames of each pixel (TransformerTemporalModel without its permutes).
  Tensor operator()(Backend& be, const Tensor& x, const Tensor& encoder_hidden_states = {}, int64_t frames = 0) const;
};

}  // namespace pia::nn
