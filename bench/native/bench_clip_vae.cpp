// The real SD-1.5 text encoder (CLIP ViT-L/14 text tower) and VAE with random weights:
// one text-encoder forward of a CFG batch [2, 77], one VAE encode of a 256×256 image (what PIA
// encodes for a 256-px run) and one VAE decode of a 32×32 latent (one 256-px frame; a video decodes
// B·F of them). Prints milliseconds per call and peak resident memory.
#include <sys/resource.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "../../test/native/sd15_random_weights.h"
#include "bench.h"
#include "core/json.h"
#include "core/thread_pool.h"
#include "nn/autoencoder_kl.h"
#include "nn/clip_text_model.h"
#include "ops/backend.h"

using namespace pia;

namespace {

// The SD-1.5 text encoder's and VAE's configs and random weights: test/native/sd15_random_weights.h.
using sd15::clip_weights;
using sd15::kClipConfig;
using sd15::kVaeConfig;
using sd15::vae_weights;

Tensor uniform(const Shape& s, float bound) {
  static uint64_t seed = 1u << 20;  // apart from the weights' seeds
  return sd15::uniform(s, bound, seed++);
}

double peak_rss_gib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / (1024.0 * 1024.0);
}

}  // namespace

PIA_BENCH(bench_clip_text_sd15) {
  auto be = make_cpu_backend();
  nn::CLIPTextConfig c = nn::CLIPTextConfig::from_json(sd15::json(kClipConfig));
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
  nn::AutoencoderKLConfig c = nn::AutoencoderKLConfig::from_json(sd15::json(kVaeConfig));
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
