// The real SD-1.5 text encoder (CLIP ViT-L/14 text tower) and VAE with random weights made here:
// one text-encoder forward of a CFG batch [2, 77], one VAE encode of a 256×256 image (what PIA
// encodes for a 256-px run) and one VAE decode of a 32×32 latent (one 256-px frame; a video decodes
// B·F of them). Prints milliseconds per call and peak resident memory.
#include <sys/resource.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "bench.h"
#include "core/json.h"
#include "core/thread_pool.h"
#include "nn/autoencoder_kl.h"
#include "nn/clip_text_model.h"
#include "ops/backend.h"

using namespace pia;

namespace {

// openai/clip-vit-large-patch14's text config and runwayml/stable-diffusion-v1-5's vae/config.json.
const char* kClipConfig = R"({"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
  "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05,
  "vocab_size": 49408, "eos_token_id": 2})";
const char* kVaeConfig = R"({"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
  "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
  "sample_size": 512, "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]})";

uint64_t g_seed = 7;

Tensor uniform(const Shape& s, float bound) {
  Tensor t = Tensor::empty(s);
  float* p = t.data<float>();
  const uint64_t seed = (g_seed++) * 0x9E3779B97F4A7C15ull;
  parallel_for(0, t.numel(), 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      uint64_t z = seed + uint64_t(i) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 31)) * 0x94D049BB133111EBull;
      z ^= z >> 29;
      p[i] = bound * (float(z >> 40) * (2.f / 16777216.f) - 1.f);
    }
  });
  return t;
}

Tensor filled(const Shape& s, float v) {
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = v;
  return t;
}

struct Gen {
  WeightStore& w;
  void linear(const std::string& p, int64_t in, int64_t out) {
    const float b = 1.f / std::sqrt(float(in));
    w.put(p + ".weight", uniform({out, in}, b));
    w.put(p + ".bias", uniform({out}, b));
  }
  void conv(const std::string& p, int64_t in, int64_t out, int64_t k) {
    const float b = 1.f / std::sqrt(float(in * k * k));
    w.put(p + ".weight", uniform({out, in, k, k}, b));
    w.put(p + ".bias", uniform({out}, b));
  }
  void norm(const std::string& p, int64_t c) {
    w.put(p + ".weight", filled({c}, 1.f));
    w.put(p + ".bias", filled({c}, 0.f));
  }
  void resnet(const std::string& p, int64_t in, int64_t out) {
    norm(p + ".norm1", in);
    conv(p + ".conv1", in, out, 3);
    norm(p + ".norm2", out);
    conv(p + ".conv2", out, out, 3);
    if (in != out) conv(p + ".conv_shortcut", in, out, 1);
  }
  void mid(const std::string& p, int64_t c) {
    resnet(p + ".resnets.0", c, c);
    norm(p + ".attentions.0.group_norm", c);
    for (const char* n : {"to_q", "to_k", "to_v", "to_out.0"}) linear(p + ".attentions.0." + n, c, c);
    resnet(p + ".resnets.1", c, c);
  }
};

void clip_weights(WeightStore& w, const nn::CLIPTextConfig& c) {
  Gen g{w};
  const int64_t d = c.hidden_size;
  w.put("text_model.embeddings.token_embedding.weight", uniform({c.vocab_size, d}, 0.02f));
  w.put("text_model.embeddings.position_embedding.weight", uniform({c.max_position_embeddings, d}, 0.02f));
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

void vae_weights(WeightStore& w, const nn::AutoencoderKLConfig& c) {
  Gen g{w};
  const auto& boc = c.block_out_channels;
  const size_t n = boc.size();
  g.conv("encoder.conv_in", c.in_channels, boc[0], 3);
  int64_t ch = boc[0];
  for (size_t i = 0; i < n; ++i) {
    const std::string p = "encoder.down_blocks." + std::to_string(i);
    for (int64_t l = 0; l < c.layers_per_block; ++l) g.resnet(p + ".resnets." + std::to_string(l), l ? boc[i] : ch, boc[i]);
    ch = boc[i];
    if (i + 1 != n) g.conv(p + ".downsamplers.0.conv", ch, ch, 3);
  }
  g.mid("encoder.mid_block", ch);
  g.norm("encoder.conv_norm_out", ch);
  g.conv("encoder.conv_out", ch, 2 * c.latent_channels, 3);
  g.conv("quant_conv", 2 * c.latent_channels, 2 * c.latent_channels, 1);
  g.conv("post_quant_conv", c.latent_channels, c.latent_channels, 1);
  g.conv("decoder.conv_in", c.latent_channels, boc[n - 1], 3);
  g.mid("decoder.mid_block", boc[n - 1]);
  ch = boc[n - 1];
  for (size_t i = 0; i < n; ++i) {
    const std::string p = "decoder.up_blocks." + std::to_string(i);
    const int64_t out = boc[n - 1 - i];
    for (int64_t l = 0; l <= c.layers_per_block; ++l) g.resnet(p + ".resnets." + std::to_string(l), l ? out : ch, out);
    ch = out;
    if (i + 1 != n) g.conv(p + ".upsamplers.0.conv", ch, ch, 3);
  }
  g.norm("decoder.conv_norm_out", boc[0]);
  g.conv("decoder.conv_out", boc[0], c.out_channels, 3);
}

double peak_rss_gib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / (1024.0 * 1024.0);
}

JsonValue json(const char* text) { return parse_json(text, std::char_traits<char>::length(text)); }

}  // namespace

PIA_BENCH(bench_clip_text_sd15) {
  auto be = make_cpu_backend();
  nn::CLIPTextConfig c = nn::CLIPTextConfig::from_json(json(kClipConfig));
  WeightStore w;
  clip_weights(w, c);
  nn::CLIPTextModel model(c, w, be);
  std::vector<int64_t> ids(2 * 77, 49407);
  for (int b = 0; b < 2; ++b) {
    ids[size_t(b * 77)] = 49406;
    for (int s = 1; s < 12; ++s) ids[size_t(b * 77 + s)] = 320 + s * 37 + b;
  }
  const double s = bench::time_it([&] { model.forward(ids, 2, 77, false); });
  bench::report("CLIPTextModel (ViT-L/14 text) forward, [2, 77]", s);
  std::printf("  peak resident memory %.2f GiB\n", peak_rss_gib());
}

PIA_BENCH(bench_vae_sd15) {
  auto be = make_cpu_backend();
  nn::AutoencoderKLConfig c = nn::AutoencoderKLConfig::from_json(json(kVaeConfig));
  WeightStore w;
  vae_weights(w, c);
  nn::AutoencoderKL vae(c, w, be);
  Tensor x = uniform({1, 3, 256, 256}, 1.f);
  Tensor z = uniform({1, 4, 32, 32}, 2.f);
  const double se = bench::time_it([&] { vae.encode(x, false, false); });
  bench::report("AutoencoderKL (SD-1.5) encode 1x3x256x256", se);
  const double sd = bench::time_it([&] { vae.decode(z, false, false); });
  bench::report("AutoencoderKL (SD-1.5) decode 1x4x32x32 -> 256x256", sd);
  std::printf("  peak resident memory %.2f GiB\n", peak_rss_gib());
}
