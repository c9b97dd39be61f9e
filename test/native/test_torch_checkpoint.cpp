// The restricted torch checkpoint reader without Node: the shared PIA .ckpt against its
// .safetensors twin through the WeightFile interface and WeightStore, a crafted os.system pickle,
// and a mutation fuzz of the A1111 .pt (run this under -fsanitize=address,undefined to check that
// hostile bytes never read out of bounds).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/errors.h"
#include "harness.h"
#include "io/safetensors.h"
#include "io/torch_checkpoint.h"
#include "io/weight_file.h"
#include "nn/weight_store.h"

using namespace pia;

namespace {

std::string loaders_dir() {
  if (const char* env = std::getenv("PIA_FIXTURES")) return std::string(env) + "/loaders";
  std::string here = __FILE__;  // <repo>/test/native/test_torch_checkpoint.cpp
  for (int i = 0; i < 3; ++i) here = here.substr(0, here.find_last_of('/'));
  return here + "/../shared/fixtures/loaders";
}

bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

std::vector<uint8_t> read_all(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::string write_temp(const std::vector<uint8_t>& bytes, const std::string& tag) {
  std::string p = "/tmp/pia_ckpt_test_" + std::to_string(::getpid()) + "_" + tag;
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  return p;
}

std::string code_of(const std::string& path) {
  try {
    auto ck = TorchCheckpoint::open(path);
    for (const auto& t : ck->tensors()) {
      std::vector<uint8_t> out(ck->byte_size(t));
      ck->copy_bytes(t, out.data());
      if (t.dtype == "F32" || t.dtype == "F16" || t.dtype == "BF16" || t.dtype == "F64") {
        Tensor x = ck->to_tensor(t, "t");
        if (x.nbytes() && x.dtype() != DType::F32 && std::memcmp(x.raw(), out.data(), x.nbytes()) != 0) return "MISMATCH";
      }
    }
    return "ok";
  } catch (const PiaException& e) {
    return e.code();
  }
}

}  // namespace

PIA_TEST(torch_checkpoint_pia_ckpt_equals_safetensors) {
  const std::string dir = loaders_dir();
  if (!exists(dir + "/mini-sd-motion-adapter.pia-original.ckpt")) {
    std::printf("  (skipped: %s not found)\n", dir.c_str());
    return;
  }
  auto ckpt = open_weight_file(dir + "/mini-sd-motion-adapter.pia-original.ckpt");
  auto st = open_weight_file(dir + "/mini-sd-motion-adapter.pia-original.safetensors");
  EXPECT(dynamic_cast<TorchStateDict*>(ckpt.get()) != nullptr);
  EXPECT(dynamic_cast<SafetensorsFile*>(st.get()) != nullptr);
  auto a = ckpt->weight_entries(), b = st->weight_entries();
  EXPECT(a.size() == 562 && b.size() == 562);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT(a[i]->name == b[i]->name && a[i]->dtype == b[i]->dtype && a[i]->shape == b[i]->shape);
    Tensor x = ckpt->tensor(a[i]->name), y = st->tensor(b[i]->name);
    EXPECT(x.dtype() == DType::F16 && x.nbytes() == y.nbytes());
    EXPECT(std::memcmp(x.raw(), y.raw(), x.nbytes()) == 0);
    EXPECT(!x.storage()->owned());  // borrowed from the mapping: torch aligns its records
  }
  WeightStore store;
  store.add_file(ckpt);
  EXPECT(store.shape_of("conv_in.weight") == (Shape{32, 9, 3, 3}));
  EXPECT(store.get("conv_in.bias", {32}).numel() == 32);
  bool threw = false;
  try {
    store.get("conv_in.bias", {31});
  } catch (const PiaException& e) {
    threw = e.code() == "E_WEIGHTS_MISMATCH";
  }
  EXPECT(threw);
}

PIA_TEST(torch_checkpoint_refuses_os_system) {
  const std::string marker = "/tmp/pia_ckpt_test_marker_" + std::to_string(::getpid());
  // PROTO 2, GLOBAL 'os\nsystem', BINUNICODE 'touch <marker>', TUPLE1, REDUCE, STOP
  std::vector<uint8_t> pkl = {0x80, 2, 'c'};
  for (char c : std::string("os\nsystem\n")) pkl.push_back(uint8_t(c));
  const std::string cmd = "touch " + marker;
  pkl.push_back('X');
  for (int i = 0; i < 4; ++i) pkl.push_back(uint8_t(cmd.size() >> (8 * i)));
  pkl.insert(pkl.end(), cmd.begin(), cmd.end());
  pkl.insert(pkl.end(), {0x85, 'R', '.'});
  const std::string p = write_temp(pkl, "evil.pt");
  std::string code, message;
  try {
    open_weight_file(p);
  } catch (const PiaException& e) {
    code = e.code();
    message = e.what();
  }
  ::unlink(p.c_str());
  EXPECT(code == "E_UNSAFE_PICKLE");
  EXPECT(message.find("'os.system'") != std::string::npos);
  EXPECT(!exists(marker));
}

PIA_TEST(torch_checkpoint_fuzz_a1111_pt) {
  const std::string src = loaders_dir() + "/kitestyle.a1111.pt";
  if (!exists(src)) {
    std::printf("  (skipped: %s not found)\n", src.c_str());
    return;
  }
  const std::vector<uint8_t> valid = read_all(src);
  EXPECT(code_of(src) == "ok");
  uint32_t s = 0x1234567u;
  auto rnd = [&](uint32_t n) {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    return s % n;
  };
  // data.pkl starts with PROTO 2, EMPTY_DICT.
  const uint8_t head[3] = {0x80, 2, '}'};
  size_t pkl = 0;
  while (pkl + 3 < valid.size() && std::memcmp(valid.data() + pkl, head, 3) != 0) ++pkl;
  EXPECT(pkl + 339 < valid.size());
  int ok = 0, rejected = 0;
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> b = valid;
    switch (rnd(3)) {
      case 0: b.resize(rnd(uint32_t(b.size()))); break;
      case 1: for (uint32_t k = 0, n = 1 + rnd(4); k < n; ++k) b[rnd(uint32_t(b.size()))] = uint8_t(rnd(256)); break;
      default: {
        for (uint32_t k = 0, n = 1 + rnd(3); k < n; ++k) b[pkl + rnd(339)] = uint8_t(rnd(256));
      }
    }
    const std::string p = write_temp(b, "fuzz.pt");
    const std::string c = code_of(p);
    ::unlink(p.c_str());
    if (c == "ok") ++ok;
    else if (c == "E_WEIGHTS_CORRUPT" || c == "E_UNSAFE_PICKLE" || c == "E_UNSUPPORTED") ++rejected;
    else pia::test::fail("case " + std::to_string(i) + ": " + c);
  }
  std::printf("  %d read, %d rejected\n", ok, rejected);
  EXPECT(ok > 0 && rejected > 0);
}
