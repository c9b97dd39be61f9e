// IP-Adapter costs on the real architectures, random weights made here:
// - bench_ip_image_encoder_vit_h: one image encoding by h94's SD-1.5 image encoder
//   (models/image_encoder: CLIP ViT-H/14 vision tower, 1280 wide, 32 layers, 16 heads, patch 14, 224²,
//   projection 1024, exact GELU), as encode_image runs it for a base adapter (image_embeds) and for a
//   plus adapter (all hidden states; plus encodes a second, all-zero input for the negative embeds).
// - bench_ip_attention_sd15: the extra cost per UNet step of the IP attention, measured on the 16
//   spatial cross-attention sites of SD-1.5 alone (a full UNet forward on a shared 2-core machine is
//   too slow and too noisy to resolve a difference of a few percent): for each site, at the PIA bench
//   geometry (B=2 under CFG, 8 frames, 256 px → latent 32×32), the text cross-attention alone vs
//   IPAdapterAttnProcessor (text + image tokens), plus the once-per-step projection of the image embeds.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../../test/native/sd15_random_weights.h"
#include "bench.h"
#include "core/json.h"
#include "core/thread_pool.h"
#include "nn/attention_processor.h"
#include "nn/clip_vision_model.h"
#include "nn/ip_adapter.h"
#include "ops/backend.h"

using namespace pia;

namespace {

// h94/IP-Adapter models/image_encoder/config.json (the fields the network reads).
const char* kVitHConfig = R"({"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
  "num_attention_heads": 16, "patch_size": 14, "image_size": 224, "projection_dim": 1024, "hidden_act": "gelu",
  "layer_norm_eps": 1e-05, "num_channels": 3})";

// Weights from test/native/sd15_random_weights.h's generator; inputs from their own seeds.
Tensor uniform(const Shape& s, float bound) {
  static uint64_t seed = 1u << 20;
  return sd15::uniform(s, bound, seed++);
}

void vit_weights(WeightStore& w, const nn::CLIPVisionConfig& c) {
  sd15::Gen g{w, 11};
  const int64_t d = c.hidden_size;
  w.put("vision_model.embeddings.class_embedding", g.u({d}, 0.02f));
  w.put("vision_model.embeddings.patch_embedding.weight",
        g.u({d, c.num_channels, c.patch_size, c.patch_size}, 1.f / std::sqrt(float(3 * c.patch_size * c.patch_size))));
  w.put("vision_model.embeddings.position_embedding.weight", g.u({c.num_positions(), d}, 0.02f));
  g.norm("vision_model.pre_layrnorm", d);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "vision_model.encoder.layers." + std::to_string(i);
    g.norm(p + ".layer_norm1", d);
    for (const char* n : {"q_proj", "k_proj", "v_proj", "out_proj"}) g.linear(p + ".self_attn." + n, d, d);
    g.norm(p + ".layer_norm2", d);
    g.linear(p + ".mlp.fc1", d, c.intermediate_size);
    g.linear(p + ".mlp.fc2", c.intermediate_size, d);
  }
  g.norm("vision_model.post_layernorm", d);
  g.linear("visual_projection", d, c.projection_dim, false);
}

// One SD-1.5 spatial cross-attention site at the bench geometry.
struct Site {
  const char* name;
  int64_t channels, side;  // hidden size, latent side at that depth (32 → 32, 16, 8, 4)
  int copies;              // Transformer2DModels with these dimensions
};

// down_blocks.{0,1,2} × 2, up_blocks.{1,2,3} × 3, mid_block × 1 = 16 sites.
const Site kSites[] = {
    {"down_blocks.0", 320, 32, 2}, {"down_blocks.1", 640, 16, 2}, {"down_blocks.2", 1280, 8, 2},
    {"up_blocks.1", 1280, 8, 3},   {"up_blocks.2", 640, 16, 3},   {"up_blocks.3", 320, 32, 3},
    {"mid_block", 1280, 4, 1},
};

// The base (ip-adapter_sd15) and plus (ip-adapter-plus_sd15) files' image projections for SD-1.5,
// under the diffusers names lib/loaders/ip_adapter.ts converts them to, and to_k_ip/to_v_ip per site.
void ip_weights(WeightStore& w, bool plus, const std::vector<nn::IpAttnSite>& sites, int64_t cross, int64_t vit_hidden,
                int64_t vit_proj) {
  sd15::Gen g{w, 29};
  if (!plus) {
    g.linear("image_proj.image_embeds", vit_proj, 4 * cross);
    g.norm("image_proj.norm", cross);
  } else {
    const int64_t hidden = 768;  // h94's plus: 16 queries of width 768, 12 heads of 64
    w.put("image_proj.latents", g.u({1, 16, hidden}, 1.f / std::sqrt(float(hidden))));
    g.linear("image_proj.proj_in", vit_hidden, hidden);
    g.linear("image_proj.proj_out", hidden, cross);
    g.norm("image_proj.norm_out", cross);
    for (int i = 0; i < 4; ++i) {
      const std::string l = "image_proj.layers." + std::to_string(i);
      g.norm(l + ".0", hidden);
      g.norm(l + ".1", hidden);
      for (const char* n : {".2.to_q", ".2.to_k", ".2.to_v", ".2.to_out.0"}) g.linear(l + n, hidden, hidden, false);
      g.norm(l + ".3.0", hidden);
      g.linear(l + ".3.1.net.0.proj", hidden, 4 * hidden, false);
      g.linear(l + ".3.1.net.2", 4 * hidden, hidden, false);
    }
  }
  for (size_t i = 0; i < sites.size(); ++i) {
    const std::string p = "ip_adapter." + std::to_string(2 * i + 1);
    g.linear(p + ".to_k_ip", cross, sites[i].hidden_size, false);
    g.linear(p + ".to_v_ip", cross, sites[i].hidden_size, false);
  }
}

using sd15::json;

}  // namespace

PIA_BENCH(bench_ip_image_encoder_vit_h) {
  auto be = make_cpu_backend();
  const nn::CLIPVisionConfig c = nn::CLIPVisionConfig::from_json(json(kVitHConfig));
  WeightStore w;
  vit_weights(w, c);
  const nn::CLIPVisionModelWithProjection model(c, w, be);
  const Tensor px = uniform({1, 3, 224, 224}, 2.f);
  // Linears 2·S·(4d² + 2·d·ff) and attention 4·S²·d per layer, plus the patch convolution.
  const double S = double(c.num_positions()), d = double(c.hidden_size), ff = double(c.intermediate_size);
  const double flops = double(c.num_hidden_layers) * (2 * S * (4 * d * d + 2 * d * ff) + 4 * S * S * d) +
                       2 * (S - 1) * d * 3 * double(c.patch_size * c.patch_size);
  const double s = bench::time_it([&] { model.forward(px, false); });
  bench::report("CLIPVisionModelWithProjection ViT-H/14 (1280 wide, 32 layers, 257 tokens), one image", s, flops);
  const double sh = bench::time_it([&] { model.forward(px, true); });
  bench::report("  the same with all 33 hidden states (plus adapters encode 2 inputs per image)", sh, flops);
}

PIA_BENCH(bench_ip_attention_sd15) {
  auto be = make_cpu_backend();
  const int64_t B = 2, F = 8, cross = 768, text_tokens = 77;
  // Sites in diffusers' attn_processors order (down, up, mid), which also numbers the file's keys.
  std::vector<nn::IpAttnSite> sites;
  std::vector<const Site*> site_of;
  for (const Site& s : kSites) {
    for (int k = 0; k < s.copies; ++k) {
      sites.push_back({std::string(s.name) + ".attentions." + std::to_string(k) + ".transformer_blocks.0.attn2",
                       s.channels, cross});
      site_of.push_back(&s);
    }
  }
  const Tensor text = be->from_host(uniform({B * F, text_tokens, cross}, 1.f));
  // One Attention per distinct geometry (the weights' values do not change the time).
  std::vector<nn::Attention> attn(std::size(kSites));
  std::vector<Tensor> x(std::size(kSites));
  for (size_t i = 0; i < std::size(kSites); ++i) {
    const Site& s = kSites[i];
    WeightStore w;
    sd15::Gen ga{w, 101 + i};
    ga.linear("a.to_q", s.channels, s.channels, false);
    ga.linear("a.to_k", cross, s.channels, false);
    ga.linear("a.to_v", cross, s.channels, false);
    ga.linear("a.to_out.0", s.channels, s.channels);
    nn::AttentionConfig ac;
    ac.query_dim = s.channels;
    ac.cross_attention_dim = cross;
    ac.heads = 8;  // SD-1.5: attention_head_dim 8 is the head count
    ac.dim_head = s.channels / 8;
    attn[i].load(w, *be, "a", ac);
    x[i] = be->from_host(uniform({B * F, s.side * s.side, s.channels}, 1.f));
  }
  auto index_of = [&](const Site* s) { return size_t(s - kSites); };

  // Per geometry, the text-only cross-attention; the IP variants are timed right after on the same
  // inputs (the fastest of several calls each, so other load on the machine matters less).
  // Wall time suffers from other processes on a shared machine; CPU-seconds (all threads) of the
  // same fastest call much less, so the comparison below uses both.
  std::vector<double> text_s(std::size(kSites)), text_cpu(std::size(kSites));
  double text_total = 0, text_cpu_total = 0;
  for (size_t i = 0; i < sites.size(); ++i) {
    const size_t g = index_of(site_of[i]);
    if (text_s[g] == 0) {
      text_s[g] = bench::time_it([&] { attn[g].attend(*be, x[g], text); });
      text_cpu[g] = bench::last_cpu_seconds();
    }
    text_total += text_s[g];
    text_cpu_total += text_cpu[g];
  }
  bench::report("16 SD-1.5 cross-attention sites, text only (B=2 F=8 32x32, 77 tokens)", text_total);
  std::printf("    %.1f CPU-ms\n", text_cpu_total * 1e3);

  const int64_t vit_hidden = 1280, vit_proj = 1024;
  for (const bool plus : {false, true}) {
    WeightStore w;
    ip_weights(w, plus, sites, cross, vit_hidden, vit_proj);
    const nn::IPAdapter adapter(be, w, plus ? nn::ImageProjectionKind::Plus : nn::ImageProjectionKind::Base, sites, cross,
                                257);
    const Tensor embeds = plus ? uniform({B, 257, vit_hidden}, 1.f) : uniform({B, vit_proj}, 1.f);
    const double proj = bench::time_it([&] { nn::make_ip_call(adapter, sites, embeds, B, F, 1.f); });
    const double proj_cpu = bench::last_cpu_seconds();
    const nn::IpCall call = nn::make_ip_call(adapter, sites, embeds, B, F, 0.7f);
    std::vector<double> ip_s(std::size(kSites)), ip_cpu(std::size(kSites));
    double ip_total = 0, ip_cpu_total = 0, ip_flops = 0;
    const double T = double(call.tokens.size(1)), N = double(B * F);
    for (size_t i = 0; i < sites.size(); ++i) {
      const size_t g = index_of(site_of[i]);
      const int slot = int(i);
      if (ip_s[g] == 0) {
        ip_s[g] = bench::time_it([&] { nn::ip_adapter_attention(*be, attn[g], slot, x[g], text, call); });
        ip_cpu[g] = bench::last_cpu_seconds();
      }
      ip_total += ip_s[g];
      ip_cpu_total += ip_cpu[g];
      // to_k_ip/to_v_ip on the N·T tokens, q·k_ipᵀ and p·v_ip over H·W queries.
      const double C = double(sites[i].hidden_size), HW = double(site_of[i]->side * site_of[i]->side);
      ip_flops += 2 * 2 * N * T * double(cross) * C + 2 * 2 * N * HW * T * C;
    }
    const char* kind = plus ? "plus (16 image tokens)" : "base (4 image tokens)";
    std::printf("  %s: %.2f GFLOP of IP attention per UNet call\n", kind, ip_flops * 1e-9);
    bench::report(std::string("  ") + kind + ": image projection + per-frame repeat, once per UNet call", proj);
    bench::report(std::string("  ") + kind + ": 16 sites with IP attention", ip_total);
    std::printf("  %s: extra per UNet call %.1f ms wall (%.1f%% of the text cross-attention), %.1f CPU-ms (%.1f%%)\n", kind,
                (ip_total - text_total + proj) * 1e3, 100.0 * (ip_total - text_total + proj) / text_total,
                (ip_cpu_total - text_cpu_total + proj_cpu) * 1e3,
                100.0 * (ip_cpu_total - text_cpu_total + proj_cpu) / text_cpu_total);
  }
}
