// CLIPTextModel and AutoencoderKL against the diffusers/transformers goldens in ../shared/fixtures,
// without Node: the same check a bare GPU machine can run for every backend. Skipped (with a
// message) when the fixtures are not beside the repository.
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/json.h"
#include "harness.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "nn/autoencoder_kl.h"
#include "nn/clip_text_model.h"
#include "nn/weight_store.h"
#include "ops/backend.h"

using namespace pia;

namespace {

std::string fixtures_dir() {
  if (const char* env = std::getenv("PIA_FIXTURES")) return env;
  std::string here = __FILE__;  // <repo>/test/native/test_clip_vae.cpp
  for (int i = 0; i < 3; ++i) here = here.substr(0, here.find_last_of('/'));
  return here + "/../shared/fixtures";
}

bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

std::string read_text(const std::string& path) {
  auto f = MappedFile::open(path);
  return std::string(reinterpret_cast<const char*>(f->data()), f->size());
}

// Every backend the networks must match diffusers on (the CUDA one joins here when it exists).
std::vector<std::shared_ptr<Backend>> backends() { return {make_cpu_backend()}; }

// max |a - ref| <= 1e-4 · max |ref|: float32 op-order noise only (see test/parity/*.test.ts).
void expect_close(const std::string& what, const Tensor& a, const Tensor& ref_raw) {
  Tensor ref = ref_raw.to(DType::F32).contiguous();
  Tensor x = a.contiguous();
  if (x.shape() != ref.shape()) pia::test::fail(what + ": shape " + shape_str(x.shape()) + " != " + shape_str(ref.shape()));
  double max_ref = 0, max_diff = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double r = ref.data<float>()[i], v = x.data<float>()[i];
    max_ref = std::max(max_ref, std::fabs(r));
    const double d = std::fabs(v - r);
    max_diff = std::isfinite(d) ? std::max(max_diff, d) : INFINITY;
  }
  std::printf("     %-40s max diff %.2e (max ref %.3f)\n", what.c_str(), max_diff, max_ref);
  if (!(max_diff <= 1e-4 * max_ref)) pia::test::fail(what + ": max diff " + std::to_string(max_diff));
}

template <typename Model, typename Config>
std::shared_ptr<Model> load(const std::string& dir, const std::string& weights, std::shared_ptr<Backend> be) {
  const std::string text = read_text(dir + "/config.json");
  Config config = Config::from_json(parse_json(text.data(), text.size()));
  WeightStore store;
  store.add_file(SafetensorsFile::open(dir + "/" + weights));
  return std::make_shared<Model>(config, store, std::move(be));
}

}  // namespace

PIA_TEST(clip_text_model_matches_transformers) {
  const std::string root = fixtures_dir();
  if (!exists(root + "/golden")) {
    std::printf("     skipped: no fixtures at %s\n", root.c_str());
    return;
  }
  for (const char* fam : {"tiny", "mini-sd"}) {
    for (auto& be : backends()) {
      auto model = load<nn::CLIPTextModel, nn::CLIPTextConfig>(root + "/models/" + fam + "/text_encoder",
                                                              "model.safetensors", be);
      auto golden = SafetensorsFile::open(root + "/golden/components/" + std::string(fam) + "_text_encoder.safetensors");
      const SafetensorsEntry* e = golden->find("input_ids");
      EXPECT(e && e->dtype == "I64" && e->shape.size() == 2);
      std::vector<int64_t> ids(size_t(e->shape[0] * e->shape[1]));
      std::memcpy(ids.data(), golden->bytes(*e), ids.size() * sizeof(int64_t));
      nn::CLIPTextOutput out = model->forward(ids, e->shape[0], e->shape[1], true);
      const std::string tag = std::string(fam) + " " + be->name() + " ";
      expect_close(tag + "last_hidden_state", out.last_hidden_state, golden->tensor("last_hidden_state"));
      expect_close(tag + "pooler_output", out.pooler_output, golden->tensor("pooler_output"));
      EXPECT(int64_t(out.hidden_states.size()) == model->config().num_hidden_layers + 1);
      const std::string last = "hidden_states_" + std::to_string(model->config().num_hidden_layers);
      expect_close(tag + last, out.hidden_states.back(), golden->tensor(last));
      nn::CLIPTextOutput skip = model->forward(ids, e->shape[0], e->shape[1], false, 1);
      expect_close(tag + "clip_skip1_embeds", skip.last_hidden_state, golden->tensor("clip_skip1_embeds"));
    }
  }
}

PIA_TEST(autoencoder_kl_matches_diffusers) {
  const std::string root = fixtures_dir();
  if (!exists(root + "/golden")) {
    std::printf("     skipped: no fixtures at %s\n", root.c_str());
    return;
  }
  for (const char* fam : {"tiny", "mini-sd"}) {
    for (auto& be : backends()) {
      auto vae = load<nn::AutoencoderKL, nn::AutoencoderKLConfig>(root + "/models/" + fam + "/vae",
                                                                  "diffusion_pytorch_model.safetensors", be);
      auto golden = SafetensorsFile::open(root + "/golden/components/" + std::string(fam) + "_vae.safetensors");
      auto tiled = SafetensorsFile::open(root + "/golden/components/" + std::string(fam) + "_vae_tiled.safetensors");
      const std::string tag = std::string(fam) + " " + be->name() + " ";
      nn::LatentDistribution d = vae->encode(golden->tensor("image").to(DType::F32), false, false);
      expect_close(tag + "mean", d.mean, golden->tensor("mean"));
      expect_close(tag + "logvar", d.logvar, golden->tensor("logvar"));
      expect_close(tag + "std", d.std, golden->tensor("std"));
      expect_close(tag + "decode_output", vae->decode(golden->tensor("decode_input").to(DType::F32), false, false),
                   golden->tensor("decode_output"));
      nn::LatentDistribution t = vae->encode(tiled->tensor("encode_input").to(DType::F32), false, true);
      expect_close(tag + "tiled_encode_mean", t.mean, tiled->tensor("tiled_encode_mean"));
      expect_close(tag + "tiled_decode_output", vae->decode(tiled->tensor("decode_input").to(DType::F32), false, true),
                   tiled->tensor("tiled_decode_output"));
      // A set cancel flag stops encode and decode with E_ABORTED.
      std::atomic<bool> cancel{true};
      for (int which = 0; which < 2; ++which) {
        bool aborted = false;
        try {
          if (which == 0) vae->encode(golden->tensor("image").to(DType::F32), false, false, &cancel);
          else vae->decode(golden->tensor("decode_input").to(DType::F32), true, true, &cancel);
        } catch (const PiaException& e) {
          aborted = e.code() == "E_ABORTED";
        }
        EXPECT(aborted);
      }
    }
  }
}
