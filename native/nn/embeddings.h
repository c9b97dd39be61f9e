#pragma once
// diffusers' Timesteps, TimestepEmbedding and SinusoidalPositionalEmbedding (models/embeddings.py).
#include <string>
#include <vector>

#include "layers.h"

namespace pia::nn {

// Timesteps(num_channels, flip_sin_to_cos, downscale_freq_shift): get_timestep_embedding.
struct Timesteps {
  int num_channels = 0;
  bool flip_sin_to_cos = true;
  float downscale_freq_shift = 0.f;
  Tensor operator()(Backend& be, const std::vector<float>& timesteps) const {
    return be.timestep_embedding(timesteps, num_channels, flip_sin_to_cos, downscale_freq_shift);
  }
};

// TimestepEmbedding: linear_1 -> act -> linear_2 (no cond_proj, no post_act).
struct TimestepEmbedding {
  Linear linear_1, linear_2;
  Activation act = Activation::SiLU;
  void load(WeightStore& w, Backend& be, const std::string& prefix, int64_t in_channels, int64_t time_embed_dim,
            const std::string& act_fn);
  Tensor operator()(Backend& be, const Tensor& sample) const { return linear_2(be, linear_1(be, sample, act)); }
};

// SinusoidalPositionalEmbedding(embed_dim, max_seq_length): x [N, S, D] + pe[:, :S]. The `pe`
// buffer is part of diffusers' state dict; it is taken from the weights when present (bit-exact
// with the reference) and computed as diffusers does otherwise.
struct SinusoidalPositionalEmbedding {
  Tensor pe;  // [1, max_seq_length, D]
  int64_t max_seq_length = 0;
  void load(WeightStore& w, Backend& be, const std::string& prefix, int64_t embed_dim, int64_t max_len);
  // norm(x) + the positions in one pass (Backend::layer_norm_add). x [N, S, D]: position s goes to
  // row s of every sequence; with frames > 0, x is the motion modules' frame-major [B·F, HW, D]
  // (frames = F) and frame f's position goes to every pixel of it.
  Tensor after_norm(Backend& be, const LayerNorm& norm, const Tensor& x, int64_t frames = 0) const;
  // pe[0, :seq] ([1, seq, D]).
  Tensor positions(Backend& be, int64_t seq) const;
};

}  // namespace pia::nn
