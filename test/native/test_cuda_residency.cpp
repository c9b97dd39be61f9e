// Model CPU offload at the backend level (Backend::set_weights_resident): weights leave the GPU and
// come back under the same tensors, and the network computes the same thing afterwards.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "core/errors.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_loader.h"
#include "harness.h"
#include "nn/clip_text_model.h"
#include "nn/weight_store.h"
#include "ops/backend.h"
#include "sd15_random_weights.h"

using namespace pia;

PIA_TEST(cpu_backend_residency_is_a_no_op) {
  auto cpu = make_cpu_backend();
  Tensor w = cpu->upload(Tensor::zeros({3}));
  cpu->set_weights_resident(false);
  EXPECT(w.device() == Device::CPU && w.data<float>()[2] == 0.f);
  cpu->set_weights_resident(true);
}

PIA_TEST(cuda_weights_offload_and_reload) {
  if (!cuda_api()) {
    std::printf("     skip cuda_weights_offload_and_reload: %s\n", cuda_status().reason.c_str());
    return;
  }
  auto gpu = make_cuda_backend(0, DType::F32);
  Tensor host = Tensor::empty({1000});
  for (int i = 0; i < 1000; ++i) host.data<float>()[i] = float(i) * 0.5f;
  Tensor w = gpu->upload(host);
  const CudaMemoryStats before = cuda_memory_stats(0);
  gpu->set_weights_resident(false);
  EXPECT(w.device() == Device::CPU);
  EXPECT(w.data<float>()[999] == 999 * 0.5f);  // now readable on the host
  EXPECT(cuda_memory_stats(0).in_use < before.in_use);
  gpu->set_weights_resident(true);
  EXPECT(w.device() == Device::CUDA);
  Tensor back = gpu->to_host(w);
  EXPECT(back.data<float>()[999] == 999 * 0.5f && back.data<float>()[1] == 0.5f);

  // A whole network: the same output after a round trip of its weights.
  const nn::CLIPTextConfig c = nn::CLIPTextConfig::from_json(sd15::json(sd15::kSmallClipConfig));
  WeightStore ws;
  sd15::clip_weights(ws, c);
  auto be = make_cuda_backend(0, DType::F32);
  nn::CLIPTextModel model(c, ws, be);
  std::vector<int64_t> ids(77, 2);
  for (size_t i = 0; i < 10; ++i) ids[i] = int64_t(5 + 17 * i);
  const Tensor ref = model.forward(ids, 1, 77, false).last_hidden_state;
  be->set_weights_resident(false);
  bool refused = false;  // offloaded weights are not used by accident
  try {
    model.forward(ids, 1, 77, false);
  } catch (const PiaException&) {
    refused = true;
  }
  EXPECT(refused);
  be->set_weights_resident(true);
  const Tensor got = model.forward(ids, 1, 77, false).last_hidden_state;
  EXPECT(got.numel() == ref.numel());
  // Same weights, same kernels: equal up to a GEMM library's choice of reduction order.
  double worst = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) worst = std::max(worst, double(std::fabs(got.data<float>()[i] - ref.data<float>()[i])));
  std::printf("     max |after reload - before| %.2e\n", worst);
  EXPECT(worst <= 1e-5);
}
