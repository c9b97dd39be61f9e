#include <atomic>
#include <cstdio>
#include <fstream>
#include <vector>

#include "core/dtype.h"
#include "core/json.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "cuda/cuda_loader.h"
#include "harness.h"
#include "io/safetensors.h"

using namespace pia;

PIA_TEST(dtype_f16_round_trip_all_values) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    EXPECT(f32_to_f16(f) == h);
  }
  EXPECT(f32_to_f16(65520.f) == 0x7c00);  // rounds to inf like torch
  EXPECT(f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00);  // tie to even
}

PIA_TEST(dtype_bf16_round_trip) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = bf16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    EXPECT(f32_to_bf16(f) == h);
  }
}

PIA_TEST(tensor_views_and_contiguous) {
  Tensor t = Tensor::empty({2, 3, 4});
  for (int i = 0; i < 24; ++i) t.data<float>()[i] = float(i);
  Tensor p = t.permute({2, 0, 1}).contiguous();
  EXPECT((p.shape() == Shape{4, 2, 3}));
  EXPECT(p.data<float>()[1] == 4.f);  // [0,0,1] <- t[0,1,0]
  Tensor n = t.narrow(1, 1, 2).contiguous();
  EXPECT(n.data<float>()[0] == 4.f && n.data<float>()[4] == 8.f && n.data<float>()[8] == 16.f);
  Tensor h = t.to(DType::F16).to(DType::F32);
  EXPECT(h.data<float>()[23] == 23.f);
}

PIA_TEST(thread_pool_covers_range_once) {
  std::vector<std::atomic<int>> hits(10007);
  parallel_for(0, 10007, 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
  });
  for (auto& h : hits) EXPECT(h.load() == 1);
}

PIA_TEST(json_rejects_malformed) {
  const char* bad[] = {"{", "{\"a\":}", "[1,]", "{\"a\":1,\"a\":2}", "\"\\ud800\"", "01", "{} x"};
  for (const char* s : bad) {
    bool threw = false;
    try {
      parse_json(s, std::strlen(s));
    } catch (const std::exception&) {
      threw = true;
    }
    EXPECT(threw);
  }
  const char* ok = "{\"n\": 18446744073709551615, \"s\": \"\\u00e9\"}";
  JsonValue v = parse_json(ok, std::strlen(ok));
  EXPECT(v.get("n")->uinteger == UINT64_MAX && v.get("s")->string == "\xc3\xa9");
}

PIA_TEST(safetensors_reads_written_file) {
  std::string path = "pia_native_test.safetensors";
  std::string header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"__metadata__\":{\"k\":\"v\"}}";
  while ((header.size() + 8) % 8) header += ' ';
  {
    std::ofstream f(path, std::ios::binary);
    uint64_t n = header.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << header;
    float v[2] = {1.5f, -2.f};
    f.write(reinterpret_cast<const char*>(v), 8);
  }
  auto st = SafetensorsFile::open(path);
  Tensor a = st->tensor("a");
  EXPECT(a.numel() == 2 && a.data<float>()[1] == -2.f);
  EXPECT(st->metadata().at("k") == "v");
  std::remove(path.c_str());
}

PIA_TEST(cuda_status_reports_reason) {
  const CudaStatus& s = cuda_status();
  std::printf("     cuda: %s\n", s.available ? ("available, " + s.devices[0].name).c_str() : s.reason.c_str());
  EXPECT(s.available || !s.reason.empty());
}

PIA_TEST(cuda_add_matches_cpu) {
  const CudaApi* api = cuda_api();
  if (!api) {
    std::printf("     skipped: %s\n", cuda_status().reason.c_str());
    return;
  }
  std::vector<float> a(100000), b(100000), out(100000);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = float(i) * 0.25f;
    b[i] = 1.f - float(i);
  }
  char err[512] = {0};
  EXPECT(api->add_f32(0, a.data(), b.data(), out.data(), a.size(), err, sizeof err) == 0);
  for (size_t i = 0; i < a.size(); ++i) EXPECT(out[i] == a[i] + b[i]);
}
