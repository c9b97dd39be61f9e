// UNetMotionModel (from_unet2d with PIA's conv_in, FreeU) against the diffusers goldens in
// ../shared/fixtures, without Node: what a bare GPU machine runs for every backend. Skipped (with a
// message) when the fixtures are not beside the repository.
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "core/json.h"
#include "harness.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "nn/attention.h"
#include "nn/unet_motion_model.h"
#include "ops/backend.h"

using namespace pia;

namespace {

std::string fixtures_root() {
  if (const char* env = std::getenv("PIA_FIXTURES")) return env;
  std::string here = __FILE__;  // <repo>/test/native/test_unet_motion.cpp
  for (int i = 0; i < 3; ++i) here = here.substr(0, here.find_last_of('/'));
  return here + "/../shared/fixtures";
}

bool file_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

JsonValue read_json(const std::string& path) {
  auto f = MappedFile::open(path);
  return parse_json(reinterpret_cast<const char*>(f->data()), f->size());
}

// Every backend the UNet must match diffusers on (the CUDA one joins here when it exists).
std::vector<std::shared_ptr<Backend>> unet_backends() { return {make_cpu_backend()}; }

// max |out - ref| <= 2e-5 · max |ref|: float32 op-order noise only (observed ≤ 1.7e-6 relative on
// the CPU; see test/parity/unet_motion.test.ts for the reasoning).
void expect_unet_close(const std::string& what, const Tensor& out, const Tensor& ref_raw) {
  Tensor ref = ref_raw.to(DType::F32).contiguous();
  if (out.shape() != ref.shape()) pia::test::fail(what + ": shape " + shape_str(out.shape()) + " != " + shape_str(ref.shape()));
  double max_ref = 0, max_diff = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double r = ref.data<float>()[i], v = out.data<float>()[i];
    max_ref = std::max(max_ref, std::fabs(r));
    const double d = std::fabs(v - r);
    max_diff = std::isfinite(d) ? std::max(max_diff, d) : INFINITY;
  }
  std::printf("     %-40s max diff %.2e (max ref %.3f)\n", what.c_str(), max_diff, max_ref);
  if (!(max_diff <= 2e-5 * max_ref)) pia::test::fail(what + ": max diff " + std::to_string(max_diff));
}

void check_family(const std::string& family) {
  const std::string root = fixtures_root();
  if (!file_exists(root + "/golden")) {
    std::printf("     skipped: no fixtures at %s\n", root.c_str());
    return;
  }
  const std::string unet_dir = root + "/models/" + family + "/unet";
  const std::string adapter_dir = root + "/models/" + family + "-motion-adapter";
  const auto config =
      nn::UNetMotionModelConfig::from_unet2d(read_json(unet_dir + "/config.json"), read_json(adapter_dir + "/config.json"));
  const JsonValue spec = read_json(root + "/golden/components/" + family + "_unet_motion.json");
  auto golden = SafetensorsFile::open(root + "/golden/components/" + family + "_unet_motion.safetensors");
  for (const auto& be : unet_backends()) {
    WeightStore unet, adapter;
    unet.add_file(SafetensorsFile::open(unet_dir + "/diffusion_pytorch_model.safetensors"));
    adapter.add_file(SafetensorsFile::open(adapter_dir + "/diffusion_pytorch_model.safetensors"));
    nn::UNetMotionModel model(be, config, unet, adapter);
    // One run per frame count with and without FreeU keeps the native suite quick.
    for (const auto& run : spec.get("runs")->array) {
      const std::string key = run.get("key")->string;
      const double t = run.get("timestep")->number;
      if (t != 500) continue;
      const std::string frames = std::to_string(int64_t(run.get("frames")->number));
      nn::FreeUParams freeu;
      if (run.get("freeu")->boolean) freeu = nn::FreeUParams{0.9f, 0.2f, 1.2f, 1.4f};
      Tensor out = model.forward(golden->tensor("f" + frames + "_sample").to(DType::F32),
                                 float(t), golden->tensor("f" + frames + "_encoder_hidden_states").to(DType::F32), freeu);
      expect_unet_close(be->name() + " " + family + " " + key, out, golden->tensor(key));
    }
  }
}

}  // namespace

PIA_TEST(unet_motion_tiny_matches_diffusers) { check_family("tiny"); }
PIA_TEST(unet_motion_mini_sd_matches_diffusers) { check_family("mini-sd"); }

// FeedForward splits its rows into chunks when the GEGLU projection would be large; the result
// must not depend on the split (chunks of 7 rows, with a ragged last one, against one pass).
PIA_TEST(feed_forward_chunks_match_one_pass) {
  auto be = make_cpu_backend();
  const int64_t dim = 24, inner = 4 * dim;
  WeightStore w;
  auto fill = [](const Shape& s, float scale, uint32_t seed) {
    Tensor t = Tensor::empty(s);
    for (int64_t i = 0; i < t.numel(); ++i) {
      seed = seed * 1664525u + 1013904223u;
      t.data<float>()[i] = scale * (float(seed >> 8) / 8388608.f - 1.f);
    }
    return t;
  };
  w.put("ff.net.0.proj.weight", fill({2 * inner, dim}, 0.2f, 1));
  w.put("ff.net.0.proj.bias", fill({2 * inner}, 0.1f, 2));
  w.put("ff.net.2.weight", fill({dim, inner}, 0.1f, 3));
  w.put("ff.net.2.bias", fill({dim}, 0.1f, 4));
  nn::FeedForward ff;
  ff.load(w, *be, "ff", dim, "geglu");
  Tensor x = fill({3, 50, dim}, 1.f, 5);
  Tensor whole = be->to_host(ff(*be, x));
  ff.chunk_bytes = 7 * 2 * inner * int64_t(sizeof(float));
  Tensor chunked = be->to_host(ff(*be, x));
  EXPECT(chunked.shape() == whole.shape());
  EXPECT(whole.shape() == (Shape{3, 50, dim}));
  double max_diff = 0;
  for (int64_t i = 0; i < whole.numel(); ++i) {
    max_diff = std::max(max_diff, double(std::fabs(whole.data<float>()[i] - chunked.data<float>()[i])));
  }
  EXPECT(max_diff <= 1e-6);
}
