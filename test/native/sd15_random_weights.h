#pragma once
// Random weights under diffusers keys for the SD-1.5 + PIA networks (UNetMotionModel from the
// 2-D UNet and the PIA motion adapter, CLIP text tower, AutoencoderKL), at the real size or any
// smaller config of the same architecture. Header-only: the CUDA test (test_cuda_ops.cpp) and
// benchmark (bench/native/bench_cuda.cpp) build the same networks with it.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/json.h"
#include "core/thread_pool.h"
#include "nn/autoencoder_kl.h"
#include "nn/clip_text_model.h"
#include "nn/unet_motion_model.h"
#include "nn/weight_store.h"

namespace pia::sd15 {

// runwayml/stable-diffusion-v1-5's unet/config.json, vae/config.json, the CLIP ViT-L/14 text config
// and openmmlab/PIA-condition-adapter's MotionAdapter config.
inline const char* kUnetConfig = R"({"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
  "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": false, "cross_attention_dim": 768,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
  "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]})";
inline const char* kAdapterConfig = R"({"_class_name": "MotionAdapter", "block_out_channels": [320, 640, 1280, 1280],
  "conv_in_channels": 9, "motion_layers_per_block": 2, "motion_max_seq_length": 32,
  "motion_mid_block_layers_per_block": 1, "motion_norm_num_groups": 32, "motion_num_attention_heads": 8,
  "use_motion_mid_block": false})";
inline const char* kClipConfig = R"({"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
  "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05,
  "vocab_size": 49408, "eos_token_id": 2})";
inline const char* kVaeConfig = R"({"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
  "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
  "sample_size": 512, "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]})";

// The same architectures at a size a CPU reference runs in seconds: every block type, both
// attention kinds, 32 GroupNorm groups, head dims 8..32 (the VAE's single head 64 wide).
inline const char* kSmallUnetConfig = R"({"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
  "block_out_channels": [64, 128, 256, 256], "center_input_sample": false, "cross_attention_dim": 96,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
  "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 16,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]})";
inline const char* kSmallAdapterConfig = R"({"_class_name": "MotionAdapter", "block_out_channels": [64, 128, 256, 256],
  "conv_in_channels": 9, "motion_layers_per_block": 2, "motion_max_seq_length": 32,
  "motion_mid_block_layers_per_block": 1, "motion_norm_num_groups": 32, "motion_num_attention_heads": 8,
  "use_motion_mid_block": false})";
inline const char* kSmallClipConfig = R"({"hidden_size": 96, "intermediate_size": 192, "num_hidden_layers": 3,
  "num_attention_heads": 4, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05,
  "vocab_size": 1000, "eos_token_id": 2})";
inline const char* kSmallVaeConfig = R"({"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [32, 64, 64, 64],
  "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
  "sample_size": 64, "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]})";

inline JsonValue json(const char* text) { return parse_json(text, std::strlen(text)); }

// Uniform(−bound, bound) from a counter hash (deterministic, filled in parallel).
inline Tensor uniform(const Shape& s, float bound, uint64_t seed) {
  Tensor t = Tensor::empty(s);
  float* p = t.data<float>();
  const uint64_t base = seed * 0x9E3779B97F4A7C15ull;
  parallel_for(0, t.numel(), 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      uint64_t z = base + uint64_t(i) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 31)) * 0x94D049BB133111EBull;
      z ^= z >> 29;
      p[i] = bound * (float(z >> 40) * (2.f / 16777216.f) - 1.f);
    }
  });
  return t;
}

struct Gen {
  WeightStore& w;
  uint64_t seed = 1;
  Tensor u(const Shape& s, float bound) { return uniform(s, bound, seed++); }
  void linear(const std::string& p, int64_t in, int64_t out, bool bias = true) {
    const float b = 1.f / std::sqrt(float(in));
    w.put(p + ".weight", u({out, in}, b));
    if (bias) w.put(p + ".bias", u({out}, b));
  }
  void conv(const std::string& p, int64_t in, int64_t out, int64_t k) {
    const float b = 1.f / std::sqrt(float(in * k * k));
    w.put(p + ".weight", u({out, in, k, k}, b));
    w.put(p + ".bias", u({out}, b));
  }
  // Not the identity: a random affine exercises the kernels' gamma/beta paths.
  void norm(const std::string& p, int64_t c) {
    Tensor g = u({c}, 0.2f);
    for (int64_t i = 0; i < c; ++i) g.data<float>()[i] += 1.f;
    w.put(p + ".weight", g);
    w.put(p + ".bias", u({c}, 0.1f));
  }
  void resnet(const std::string& p, int64_t in, int64_t out, int64_t temb) {
    norm(p + ".norm1", in);
    conv(p + ".conv1", in, out, 3);
    if (temb) linear(p + ".time_emb_proj", temb, out);
    norm(p + ".norm2", out);
    conv(p + ".conv2", out, out, 3);
    if (in != out) conv(p + ".conv_shortcut", in, out, 1);
  }
  void attention(const std::string& p, int64_t c, int64_t kv) {
    linear(p + ".to_q", c, c, false);
    linear(p + ".to_k", kv, c, false);
    linear(p + ".to_v", kv, c, false);
    linear(p + ".to_out.0", c, c);
  }
  void block(const std::string& p, int64_t c, int64_t cross) {
    norm(p + ".norm1", c);
    attention(p + ".attn1", c, c);
    norm(p + ".norm2", c);
    attention(p + ".attn2", c, cross ? cross : c);
    norm(p + ".norm3", c);
    linear(p + ".ff.net.0.proj", c, 8 * c);
    linear(p + ".ff.net.2", 4 * c, c);
  }
  void transformer_2d(const std::string& p, int64_t c, int64_t cross) {
    norm(p + ".norm", c);
    conv(p + ".proj_in", c, c, 1);
    block(p + ".transformer_blocks.0", c, cross);
    conv(p + ".proj_out", c, c, 1);
  }
  void motion_module(const std::string& p, int64_t c) {
    norm(p + ".norm", c);
    linear(p + ".proj_in", c, c);
    block(p + ".transformer_blocks.0", c, 0);
    linear(p + ".proj_out", c, c);
  }
  void vae_mid(const std::string& p, int64_t c) {
    resnet(p + ".resnets.0", c, c, 0);
    norm(p + ".attentions.0.group_norm", c);
    for (const char* n : {"to_q", "to_k", "to_v", "to_out.0"}) linear(p + ".attentions.0." + n, c, c);
    resnet(p + ".resnets.1", c, c, 0);
  }
};

// Every key of the 2-D UNet (into `unet`) and of the PIA adapter (into `adapter`).
inline void unet_weights(const nn::UNetMotionModelConfig& c, WeightStore& unet, WeightStore& adapter) {
  Gen u{unet, 1}, a{adapter, 1000003};
  const auto& ch = c.block_out_channels;
  const int64_t C0 = ch[0], temb = 4 * C0, n = int64_t(ch.size()), X = c.cross_attention_dim;
  u.conv("conv_in", 4, C0, 3);
  a.conv("conv_in", c.conv_in_channels, C0, 3);
  u.linear("time_embedding.linear_1", C0, temb);
  u.linear("time_embedding.linear_2", temb, temb);
  int64_t out = C0;
  for (int64_t i = 0; i < n; ++i) {
    const std::string p = "down_blocks." + std::to_string(i);
    const int64_t in = out;
    out = ch[size_t(i)];
    for (int l = 0; l < c.layers_per_block; ++l) {
      const std::string L = std::to_string(l);
      u.resnet(p + ".resnets." + L, l == 0 ? in : out, out, temb);
      if (c.down_block_types[size_t(i)] == "CrossAttnDownBlockMotion") u.transformer_2d(p + ".attentions." + L, out, X);
      a.motion_module(p + ".motion_modules." + L, out);
    }
    if (i + 1 < n) u.conv(p + ".downsamplers.0.conv", out, out, 3);
  }
  const int64_t top = ch.back();
  u.resnet("mid_block.resnets.0", top, top, temb);
  u.transformer_2d("mid_block.attentions.0", top, X);
  u.resnet("mid_block.resnets.1", top, top, temb);
  if (c.use_motion_mid_block) a.motion_module("mid_block.motion_modules.0", top);
  out = ch.back();
  for (int64_t i = 0; i < n; ++i) {
    const std::string p = "up_blocks." + std::to_string(i);
    const int64_t prev = out;
    out = ch[size_t(n - 1 - i)];
    const int64_t in = ch[size_t(std::max<int64_t>(n - 2 - i, 0))];
    for (int l = 0; l <= c.layers_per_block; ++l) {
      const std::string L = std::to_string(l);
      const int64_t skip = l == c.layers_per_block ? in : out;
      u.resnet(p + ".resnets." + L, (l == 0 ? prev : out) + skip, out, temb);
      if (c.up_block_types[size_t(i)] == "CrossAttnUpBlockMotion") u.transformer_2d(p + ".attentions." + L, out, X);
      a.motion_module(p + ".motion_modules." + L, out);
    }
    if (i + 1 < n) u.conv(p + ".upsamplers.0.conv", out, out, 3);
  }
  u.norm("conv_norm_out", C0);
  u.conv("conv_out", C0, c.out_channels, 3);
}

inline void clip_weights(WeightStore& w, const nn::CLIPTextConfig& c) {
  Gen g{w, 77};
  const int64_t d = c.hidden_size;
  w.put("text_model.embeddings.token_embedding.weight", g.u({c.vocab_size, d}, 0.5f));
  w.put("text_model.embeddings.position_embedding.weight", g.u({c.max_position_embeddings, d}, 0.5f));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "text_model.encoder.layers." + std::to_string(i);
    g.norm(p + ".layer_norm1", d);
    for (const char* n : {"q_proj", "k_proj", "v_proj", "out_proj"}) g.linear(p + ".self_attn." + n, d, d);
    g.norm(p + ".layer_norm2", d);
    g.linear(p + ".mlp.fc1", d, c.intermediate_size);
    g.linear(p + ".mlp.fc2", c.intermediate_size, d);
  }
  g.norm("text_model.final_layer_norm", d);
}

inline void vae_weights(WeightStore& w, const nn::AutoencoderKLConfig& c) {
  Gen g{w, 4242};
  const auto& boc = c.block_out_channels;
  const size_t n = boc.size();
  g.conv("encoder.conv_in", c.in_channels, boc[0], 3);
  int64_t ch = boc[0];
  for (size_t i = 0; i < n; ++i) {
    const std::string p = "encoder.down_blocks." + std::to_string(i);
    for (int64_t l = 0; l < c.layers_per_block; ++l) g.resnet(p + ".resnets." + std::to_string(l), l ? boc[i] : ch, boc[i], 0);
    ch = boc[i];
    if (i + 1 != n) g.conv(p + ".downsamplers.0.conv", ch, ch, 3);
  }
  g.vae_mid("encoder.mid_block", ch);
  g.norm("encoder.conv_norm_out", ch);
  g.conv("encoder.conv_out", ch, 2 * c.latent_channels, 3);
  g.conv("quant_conv", 2 * c.latent_channels, 2 * c.latent_channels, 1);
  g.conv("post_quant_conv", c.latent_channels, c.latent_channels, 1);
  g.conv("decoder.conv_in", c.latent_channels, boc[n - 1], 3);
  g.vae_mid("decoder.mid_block", boc[n - 1]);
  ch = boc[n - 1];
  for (size_t i = 0; i < n; ++i) {
    const std::string p = "decoder.up_blocks." + std::to_string(i);
    const int64_t out = boc[n - 1 - i];
    for (int64_t l = 0; l <= c.layers_per_block; ++l) g.resnet(p + ".resnets." + std::to_string(l), l ? out : ch, out, 0);
    ch = out;
    if (i + 1 != n) g.conv(p + ".upsamplers.0.conv", ch, ch, 3);
  }
  g.norm("decoder.conv_norm_out", boc[0]);
  g.conv("decoder.conv_out", boc[0], c.out_channels, 3);
}

}  // namespace pia::sd15
