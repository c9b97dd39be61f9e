// The tensor-core attention kernel's own code (native/cuda/attention_tc_body.cuh), run on the host
// by a small SIMT emulator and compared with the CPU backend: the loaders, the zero padding, the
// masks, the online softmax, the C → A reuse of P and the strided output are those the GPU runs;
// only the hardware primitives are emulated. Runs everywhere, GPU or not.
//
// Emulator: one CTA at a time, its threads (128 or 32) as ucontext coroutines on one OS thread, switched
// only at collective operations. __syncthreads releases when all 128 threads wait on it; a warp
// collective (shuffle, mma) when the 32 lanes of that warp do. Anything else — a collective
// reached by part of a warp, lanes at different collectives — leaves no thread runnable and fails
// the test as a deadlock instead of hanging. The mma is formed from its definition on whole
// matrices, the lanes' registers placed by mma_layout.cuh's maps (checked against the PTX ISA's
// tables by test_mma_layout.cpp). Shared memory starts filled with NaNs and is surrounded by NaN
// guards, so a read of an element the kernel did not write poisons the result.
#include <ucontext.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "cuda/attention_tc_body.cuh"
#include "harness.h"
#include "ops/backend.h"

using namespace pia;

namespace {

constexpr int kMaxThreads = 4 * 32;
constexpr size_t kStack = 256 * 1024;
constexpr int kGuard = 64;  // NaN elements before and after the shared tile

enum class Wait { Run, Warp, Cta, Done };

struct Cta;

// The execution context of attention_tc_body.cuh for one emulated thread.
struct Emu {
  Cta* cta;
  int tid;
  bool bf16;
  int thread() const { return tid; }
  int threads() const;
  int block_x() const;
  int block_y() const;
  void sync();
  float shfl_xor(float v, int lane_mask);
  void mma(float c[4], const uint32_t a[4], const uint32_t b[2]);
  uint16_t bits(float x) const { return bf16 ? f32_to_bf16(x) : f32_to_f16(x); }
  float value(uint16_t b) const { return bf16 ? bf16_to_f32(b) : f16_to_f32(b); }
  float exp2(float v) const { return std::exp2(v); }
  void load16(const uint16_t* g, uint32_t w[4]) const {
    if (reinterpret_cast<uintptr_t>(g) & 15u) test::fail("16-byte global load from an unaligned address");
    std::memcpy(w, g, 16);
  }
  void store16(uint16_t* s, const uint32_t w[4]) const {
    if (reinterpret_cast<uintptr_t>(s) & 15u) test::fail("16-byte shared store to an unaligned address");
    std::memcpy(s, w, 16);
  }
};

struct Cta {
  int bx = 0, by = 0, nthreads = 0;
  ucontext_t scheduler{};
  ucontext_t ctx[kMaxThreads];
  std::vector<std::unique_ptr<char[]>> stacks;
  Wait state[kMaxThreads];
  // Exchange slots of the warp collectives.
  float fslot[kMaxThreads];
  uint32_t aslot[kMaxThreads][4], bslot[kMaxThreads][2];
  bool failed = false;
  std::string failure;

  void wait(int tid, Wait w) {
    state[tid] = w;
    swapcontext(&ctx[tid], &scheduler);
  }
};

int Emu::threads() const { return cta->nthreads; }
int Emu::block_x() const { return cta->bx; }
int Emu::block_y() const { return cta->by; }
void Emu::sync() { cta->wait(tid, Wait::Cta); }

float Emu::shfl_xor(float v, int lane_mask) {
  cta->fslot[tid] = v;
  cta->wait(tid, Wait::Warp);
  const float r = cta->fslot[(tid & ~31) | ((tid & 31) ^ lane_mask)];
  cta->wait(tid, Wait::Warp);  // nobody overwrites a slot before every lane has read
  return r;
}

void Emu::mma(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  using namespace pia_mma;
  std::memcpy(cta->aslot[tid], a, sizeof(uint32_t) * 4);
  std::memcpy(cta->bslot[tid], b, sizeof(uint32_t) * 2);
  cta->wait(tid, Wait::Warp);
  const int w0 = tid & ~31;
  float A[kM][kK], B[kK][kN];
  for (int lane = 0; lane < 32; ++lane) {
    for (int e = 0; e < kAElems; ++e) {
      A[a_row(lane, e)][a_col(lane, e)] = value(uint16_t(cta->aslot[w0 + lane][e >> 1] >> (16 * (e & 1))));
    }
    for (int e = 0; e < kBElems; ++e) {
      B[b_k(lane, e)][b_n(lane, e)] = value(uint16_t(cta->bslot[w0 + lane][e >> 1] >> (16 * (e & 1))));
    }
  }
  const int lane = tid & 31;
  for (int e = 0; e < kCElems; ++e) {
    double acc = c[e];
    for (int k = 0; k < kK; ++k) acc += double(A[c_row(lane, e)][k]) * double(B[k][c_col(lane, e)]);
    c[e] = float(acc);
  }
  cta->wait(tid, Wait::Warp);
}

struct Launch {
  pia_attn_tc::Params p;
  pia_attn_tc::Bucket bucket;
  bool bf16;
  int64_t batch_heads;
};

thread_local Cta* g_cta = nullptr;
thread_local const Launch* g_launch = nullptr;
thread_local uint16_t* g_smem = nullptr;
thread_local int g_start_tid = 0;

template <int DMAX, int KT, int WARPS>
void run_body(Emu& x, const pia_attn_tc::Params& p, uint16_t* smem) {
  pia_attn_tc::attention_cta<DMAX, KT, WARPS>(x, p, smem);
}

void thread_entry() {
  Cta* cta = g_cta;
  const int tid = g_start_tid;
  Emu x{cta, tid, g_launch->bf16};
  try {
    const pia_attn_tc::Bucket k = g_launch->bucket;
    bool ran = false;
#define PIA_RUN_IF(DMAX, KT, WARPS)                                              \
  if (!ran && k.dmax == DMAX && k.kt == KT && k.warps == WARPS) {                 \
    run_body<DMAX, KT, WARPS>(x, g_launch->p, g_smem);                            \
    ran = true;                                                                   \
  }
    PIA_ATTN_TC_TILES(PIA_RUN_IF)
#undef PIA_RUN_IF
    if (!ran) test::fail("bucket_for chose a tile that PIA_ATTN_TC_TILES does not list");
  } catch (const test::Failure& f) {
    // Exceptions cannot cross the context switch: record and finish this thread.
    cta->failed = true;
    if (cta->failure.empty()) cta->failure = f.message;
  }
  cta->state[tid] = Wait::Done;
  // Returning resumes uc_link, the scheduler.
}

struct TileInfo {
  size_t smem_elems = 0;
  int rows = 0;
};
TileInfo tile_info(const pia_attn_tc::Bucket& k) {
  TileInfo t;
#define PIA_INFO_IF(DMAX, KT, WARPS)                                             \
  if (k.dmax == DMAX && k.kt == KT && k.warps == WARPS) {                         \
    t.smem_elems = pia_attn_tc::Shape<DMAX, KT, WARPS>::kSmemElems;               \
    t.rows = pia_attn_tc::Shape<DMAX, KT, WARPS>::kRows;                          \
  }
  PIA_ATTN_TC_TILES(PIA_INFO_IF)
#undef PIA_INFO_IF
  if (!t.rows) test::fail("no tile for this bucket");
  return t;
}

// Every CTA of the grid (batch·heads, ceil(Sq / rows)), one after the other, as launch_tc does.
void emulate(const Launch& L) {
  const TileInfo info = tile_info(L.bucket);
  const int nthreads = info.rows / 16 * 32;
  const int qtiles = (L.p.Sq + info.rows - 1) / info.rows;
  const size_t n = info.smem_elems;
  const uint16_t nan_bits = L.bf16 ? 0x7fc0 : 0x7e00;
  alignas(16) static uint16_t smem_buf[kGuard + 48 * 1024 / 2 + kGuard];
  for (int64_t bx = 0; bx < L.batch_heads; ++bx) {
    for (int by = 0; by < qtiles; ++by) {
      for (auto& e : smem_buf) e = nan_bits;
      auto cta = std::make_unique<Cta>();
      cta->bx = int(bx);
      cta->by = by;
      cta->nthreads = nthreads;
      g_cta = cta.get();
      g_launch = &L;
      g_smem = smem_buf + kGuard;
      for (int t = 0; t < nthreads; ++t) {
        cta->stacks.emplace_back(new char[kStack]);
        getcontext(&cta->ctx[t]);
        cta->ctx[t].uc_stack.ss_sp = cta->stacks.back().get();
        cta->ctx[t].uc_stack.ss_size = kStack;
        cta->ctx[t].uc_link = &cta->scheduler;
        makecontext(&cta->ctx[t], thread_entry, 0);
        cta->state[t] = Wait::Run;
      }
      bool started[kMaxThreads] = {};
      for (;;) {
        bool ran = false;
        for (int t = 0; t < nthreads; ++t) {
          if (cta->state[t] != Wait::Run) continue;
          if (!started[t]) {
            started[t] = true;
            g_start_tid = t;
          }
          swapcontext(&cta->scheduler, &cta->ctx[t]);
          ran = true;
        }
        if (ran) continue;
        // Everyone is parked: release what is complete.
        int done = 0, at_cta = 0;
        for (int t = 0; t < nthreads; ++t) {
          done += cta->state[t] == Wait::Done;
          at_cta += cta->state[t] == Wait::Cta;
        }
        if (done == nthreads) break;
        bool released = false;
        if (at_cta == nthreads) {
          for (int t = 0; t < nthreads; ++t) cta->state[t] = Wait::Run;
          released = true;
        }
        for (int w = 0; w < nthreads / 32 && !released; ++w) {
          bool all = true;
          for (int l = 0; l < 32; ++l) all = all && cta->state[w * 32 + l] == Wait::Warp;
          if (all) {
            for (int l = 0; l < 32; ++l) cta->state[w * 32 + l] = Wait::Run;
            released = true;
          }
        }
        if (!released) {
          // A failed thread (recorded below) stops before its collectives, which parks the rest.
          if (cta->failed) break;
          test::fail("emulated CTA (" + std::to_string(bx) + ", " + std::to_string(by) +
                     ") deadlocked: a collective not reached by every thread it needs");
        }
      }
      if (cta->failed) test::fail("in emulated CTA: " + cta->failure);
      for (int i = 0; i < kGuard; ++i) {
        EXPECT(std::isnan(L.bf16 ? bf16_to_f32(smem_buf[i]) : f16_to_f32(smem_buf[i])));
        EXPECT(std::isnan(L.bf16 ? bf16_to_f32(smem_buf[kGuard + n + i]) : f16_to_f32(smem_buf[kGuard + n + i])));
      }
    }
  }
}

std::vector<uint16_t> to_bits(const Tensor& t, bool bf16) {
  std::vector<uint16_t> b(size_t(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) {
    b[size_t(i)] = bf16 ? f32_to_bf16(t.data<float>()[i]) : f32_to_f16(t.data<float>()[i]);
  }
  return b;
}

Tensor from_bits(const std::vector<uint16_t>& b, const Shape& s, bool bf16) {
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = bf16 ? bf16_to_f32(b[size_t(i)]) : f16_to_f32(b[size_t(i)]);
  return t;
}

Tensor randn(const Shape& s, std::mt19937& g, float sd) {
  std::normal_distribution<float> d(0.f, sd);
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(g);
  return t;
}

double nmse(const Tensor& y, const Tensor& ref) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double v = y.data<float>()[i], r = ref.data<float>()[i];
    if (!std::isfinite(v)) return INFINITY;
    num += (v - r) * (v - r);
    den += r * r;
  }
  return den > 0 ? num / den : num;
}

struct Case {
  int64_t B, Sq, Sk, H, D, Dv;
  bool causal;
  int64_t frames = 0;      // > 0: the temporal layout [B·F, HW = Sq, C], frames as the sequence
  float sd = 1.f;          // q and k entries' standard deviation
  bool growing = false;    // key j scaled by 0.25 + 1.5·j/Sk (the running max rises tile by tile)
  int misalign = 0;        // elements by which q, k, v start past a 16-byte boundary
};

// Builds the operands, the PiaAttentionArgs exactly as cuda_backend.cpp does for attention() and
// temporal_attention(), runs the emulated kernel, and compares with the CPU backend.
void run_case(const Case& c, bool bf16, uint32_t seed) {
  std::mt19937 g(seed);
  const bool temporal = c.frames > 0;
  const int64_t C = c.H * c.D, Cv = c.H * c.Dv;
  const Shape qs = temporal ? Shape{c.B * c.frames, c.Sq, C} : Shape{c.B, c.Sq, C};
  const Shape ks = temporal ? Shape{c.B * c.frames, c.Sq, C} : Shape{c.B, c.Sk, C};
  const Shape vs = temporal ? Shape{c.B * c.frames, c.Sq, Cv} : Shape{c.B, c.Sk, Cv};
  const Shape os = temporal ? Shape{c.B * c.frames, c.Sq, Cv} : Shape{c.B, c.Sq, Cv};
  Tensor q = randn(qs, g, c.sd), k = randn(ks, g, c.sd), v = randn(vs, g, 1.f);
  if (c.growing) {
    const int64_t S = ks[1];
    for (int64_t b = 0; b < ks[0]; ++b)
      for (int64_t j = 0; j < S; ++j)
        for (int64_t e = 0; e < C; ++e) k.data<float>()[(b * S + j) * C + e] *= 0.25f + 1.5f * float(j) / float(S);
  }
  // Device-like buffers (16-byte aligned, then shifted by `misalign`), with NaN guards after.
  auto buffer = [&](const std::vector<uint16_t>& src, std::vector<uint16_t>& store) {
    store.assign(src.size() + 16 + 64, bf16 ? 0x7fc0 : 0x7e00);
    uint16_t* base = store.data();
    while (reinterpret_cast<uintptr_t>(base) & 15u) ++base;
    base += c.misalign;
    std::memcpy(base, src.data(), src.size() * 2);
    return base;
  };
  std::vector<uint16_t> qb, kb, vb, ob;
  const std::vector<uint16_t> qbits = to_bits(q, bf16), kbits = to_bits(k, bf16), vbits = to_bits(v, bf16);
  uint16_t* qd = buffer(qbits, qb);
  uint16_t* kd = buffer(kbits, kb);
  uint16_t* vd = buffer(vbits, vb);
  std::vector<uint16_t> zeros(size_t(os[0] * os[1] * os[2]), 0);
  uint16_t* od = buffer(zeros, ob);
  const uint16_t nan_bits = bf16 ? 0x7fc0 : 0x7e00;
  for (size_t i = 0; i < zeros.size(); ++i) od[i] = nan_bits;  // every output must be written

  PiaAttentionArgs a{};
  a.dtype = bf16 ? 2 : 1;
  a.q = qd;
  a.k = kd;
  a.v = vd;
  a.o = od;
  if (temporal) {
    const int64_t F = c.frames, HW = c.Sq;
    a.sq = {F * HW * C, C, HW * C};
    a.sk = {F * HW * C, C, HW * C};
    a.sv = {F * HW * Cv, Cv, HW * Cv};
    a.so = {F * HW * Cv, Cv, HW * Cv};
    a.batch = c.B * HW;
    a.batch_inner = HW;
    a.Sq = a.Sk = F;
  } else {
    a.sq = {c.Sq * C, 0, C};
    a.sk = {c.Sk * C, 0, C};
    a.sv = {c.Sk * Cv, 0, Cv};
    a.so = {c.Sq * Cv, 0, Cv};
    a.batch = c.B;
    a.batch_inner = 1;
    a.Sq = c.Sq;
    a.Sk = c.Sk;
  }
  a.heads = c.H;
  a.D = c.D;
  a.Dv = c.Dv;
  a.scale = float(1.0 / std::sqrt(double(c.D)));
  a.causal = c.causal ? 1 : 0;

  Launch L{pia_attn_tc::make_params(a), pia_attn_tc::bucket_for(int(c.D), int(c.Dv), int(a.Sq)), bf16, a.batch * a.heads};
  emulate(L);
  for (size_t i = zeros.size(); i < zeros.size() + 64; ++i) EXPECT(od[i] == nan_bits);  // nothing written past the end

  auto cpu = make_cpu_backend();
  AttentionParams ap;
  ap.heads = int(c.H);
  ap.scale = a.scale;
  ap.causal = c.causal;
  const Tensor qr = from_bits(qbits, qs, bf16), kr = from_bits(kbits, ks, bf16), vr = from_bits(vbits, vs, bf16);
  const Tensor ref = cpu->to_host(temporal ? cpu->temporal_attention(cpu->from_host(qr), cpu->from_host(kr),
                                                                     cpu->from_host(vr), c.frames, ap)
                                           : cpu->attention(cpu->from_host(qr), cpu->from_host(kr), cpu->from_host(vr), ap));
  std::vector<uint16_t> out(od, od + zeros.size());
  const Tensor got = from_bits(out, os, bf16);
  const double e = nmse(got, ref);
  // The thresholds of cuda_attention_tc_vs_cpu (test_cuda_ops.cpp argues them).
  const double threshold = bf16 ? 5e-5 : 1e-6;
  char name[200];
  std::snprintf(name, sizeof name, "%s %s B%lld %s%lld %s%lld H%lld D%lld/%lld%s%s%s%s", bf16 ? "bf16" : "f16",
                temporal ? "temporal" : "attention", (long long)c.B, temporal ? "HW" : "Sq", (long long)c.Sq,
                temporal ? "F" : "Sk", (long long)(temporal ? c.frames : c.Sk), (long long)c.H, (long long)c.D,
                (long long)c.Dv,
                c.causal ? " causal" : "", c.sd != 1.f ? " large scores" : "", c.growing ? " growing" : "",
                c.misalign ? " misaligned" : "");
  std::printf("     %-66s nmse %.2e (max %.0e) tile %d/%d/%d%s\n", name, e, threshold, L.bucket.dmax, L.bucket.kt,
              L.bucket.warps, L.p.vec ? ", 16-byte loads" : "");
  if (!(e <= threshold)) test::fail(std::string(name) + ": nmse " + std::to_string(e));
}

}  // namespace

PIA_TEST(attention_tc_emulated_vs_cpu) {
  const Case cases[] = {
      {1, 77, 130, 2, 40, 40, false},                       // SD's 64x64 head dim, ragged ends, 3 key tiles
      {2, 7, 7, 1, 8, 16, true},                            // D != Dv, causal, one short tile
      {1, 130, 77, 1, 64, 24, true},                        // 3 query tiles, causal skips
      {1, 16, 70, 1, 160, 160, false},                      // one warp, 32-key tiles
      {1, 40, 70, 1, 136, 136, true},                       // four warps, 32-key tiles
      {1, 9, 40, 2, 80, 80, false},                         // one warp, the 96 bucket
      {1, 65, 65, 1, 80, 80, false},                        // the 96 bucket, one row in the last CTA
      {2, 33, 17, 2, 12, 12, false},                        // element-wise loads (12 % 8 != 0)
      {1, 1, 1, 1, 5, 5, false},                            // one query, one key
      {1, 64, 200, 1, 64, 64, false, 0, std::sqrt(30.f), true},  // scores ~ ±30, rising max
      {1, 40, 50, 1, 40, 40, false, 0, 1.f, false, 1},      // misaligned base: no 16-byte loads
      {2, 5, 0, 2, 40, 40, false, 16},                      // temporal: F 16, HW 5, in place
      {1, 3, 0, 1, 12, 12, false, 24},                      // temporal: F 24, element-wise loads
  };
  uint32_t seed = 1;
  for (const Case& c : cases) {
    run_case(c, false, seed++);
    run_case(c, true, seed++);
  }
}
