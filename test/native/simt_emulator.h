#pragma once
// A host emulator of one CUDA thread block, for the kernel bodies written against an execution
// context (gemm_pipelined_body.cuh, norm_body.cuh): the threads are ucontext coroutines on one OS
// thread, switched only at collective operations, so a run is deterministic and a collective that
// not every thread reaches leaves nothing runnable, which is reported as a deadlock instead of a
// hang. Warp collectives carry a name, and lanes parked at different ones are a deadlock too.
//
// Shared memory starts as all-ones bytes (NaN as f16, bf16 and f32), so a read of something never
// written poisons the result, and is watched by a race detector at 2-byte granularity: every
// access records (thread, barrier epoch, warp epoch), and two accesses of which one writes, by
// different threads, with no __syncthreads between them (nor a __syncwarp, for lanes of one
// warp), fail the test. A warp-wide access (wmma) counts as the warp's: ordered with the warp's
// other wmma accesses, not with its lanes' own loads and stores without a __syncwarp.
//
// cp.async is modelled as the hardware allows it to behave: the 16 bytes land at an unknown time
// between the copy and the cp.async.wait_group that retires its group, so they land exactly there
// (as writes by the issuing thread), and until then any access of those bytes — a read, a store,
// a second copy — fails the test. Groups are counted as the PTX ISA says: commit_group closes the
// copies issued since the last one into a group, wait_group N retires all but the newest N groups.
#include <ucontext.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "harness.h"

namespace pia::simt {

constexpr int kMaxThreads = 256;
constexpr int kWarps = kMaxThreads / 32;
constexpr size_t kStack = 128 * 1024;
constexpr size_t kGuard = 256;  // bytes of all-ones before and after shared memory

enum class Wait : uint8_t { Run, Warp, Cta, Done };

class Block {
 public:
  // nthreads a multiple of 32, at most kMaxThreads; smem_bytes of shared memory, 128-byte aligned.
  Block(int nthreads, size_t smem_bytes) : nthreads_(nthreads), smem_bytes_(smem_bytes) {
    if (nthreads % 32 || nthreads > kMaxThreads || nthreads <= 0) test::fail("emulator: bad thread count");
    store_.assign(smem_bytes + 2 * kGuard + 128, 0xff);
    uintptr_t base = reinterpret_cast<uintptr_t>(store_.data()) + kGuard;
    base = (base + 127) & ~uintptr_t(127);
    smem_ = reinterpret_cast<unsigned char*>(base);
    shadow_.resize((smem_bytes + 1) / 2);
    stacks_.reset(new char[kStack * size_t(nthreads)]);
  }

  int threads() const { return nthreads_; }
  int block(int axis) const { return idx_[axis]; }
  unsigned char* smem() { return smem_; }
  size_t smem_bytes() const { return smem_bytes_; }

  // Global buffers that cp.async may read (whole 16-byte chunks inside one of them).
  void add_global(const void* p, size_t bytes) { globals_.push_back({static_cast<const char*>(p), bytes}); }
  void clear_globals() { globals_.clear(); }

  // Runs every thread of block (bx, by, bz) through body(tid) to its end; a failure in a thread,
  // a deadlock, a copy still pending at exit or a touched guard byte fails the test.
  void run(int bx, int by, int bz, std::function<void(int)> body) {
    idx_[0] = bx, idx_[1] = by, idx_[2] = bz;
    ++epoch_;
    body_ = std::move(body);
    std::memset(store_.data(), 0xff, store_.size());
    for (auto& s : shadow_) s.pending = 0;
    failure_.clear();
    for (int t = 0; t < nthreads_; ++t) {
      getcontext(&ctx_[t]);
      ctx_[t].uc_stack.ss_sp = stacks_.get() + kStack * size_t(t);
      ctx_[t].uc_stack.ss_size = kStack;
      ctx_[t].uc_link = &scheduler_;
      makecontext(&ctx_[t], &Block::entry, 0);
      state_[t] = Wait::Run;
      started_[t] = false;
      open_[t].clear();
      groups_[t].clear();
    }
    for (;;) {
      bool ran = false;
      for (int t = 0; t < nthreads_; ++t) {
        if (state_[t] != Wait::Run) continue;
        current() = this;
        if (!started_[t]) {
          started_[t] = true;
          start_tid() = t;
        }
        swapcontext(&scheduler_, &ctx_[t]);
        ran = true;
      }
      if (ran) continue;
      if (!failure_.empty()) break;  // a failed thread stops before its collectives
      int done = 0, at_cta = 0;
      for (int t = 0; t < nthreads_; ++t) {
        done += state_[t] == Wait::Done;
        at_cta += state_[t] == Wait::Cta;
      }
      if (done == nthreads_) break;
      if (at_cta == nthreads_) {
        ++epoch_;
        for (int t = 0; t < nthreads_; ++t) state_[t] = Wait::Run;
        continue;
      }
      bool released = false;
      for (int w = 0; w < nthreads_ / 32 && !released; ++w) {
        bool all = true;
        for (int l = 0; l < 32 && all; ++l) {
          all = state_[w * 32 + l] == Wait::Warp && what_[w * 32 + l] == what_[w * 32];
        }
        if (!all) continue;
        if (what_[w * 32] == kSyncwarp) ++warp_epoch_[w];
        for (int l = 0; l < 32; ++l) state_[w * 32 + l] = Wait::Run;
        released = true;
      }
      if (!released) test::fail("block (" + std::to_string(bx) + ", " + std::to_string(by) + ", " +
                                std::to_string(bz) + ") deadlocked: " + describe_parked());
    }
    if (!failure_.empty()) test::fail("block (" + std::to_string(bx) + ", " + std::to_string(by) + ", " +
                                      std::to_string(bz) + "): " + failure_);
    for (int t = 0; t < nthreads_; ++t) {
      bool pending = !open_[t].empty();
      for (const auto& g : groups_[t]) pending = pending || !g.empty();  // empty groups are harmless
      if (pending) test::fail("thread " + std::to_string(t) + " exited with cp.async copies not waited for");
    }
    for (size_t i = 0; i < kGuard; ++i) {
      if (smem_[-1 - std::ptrdiff_t(i)] != 0xff || smem_[smem_bytes_ + i] != 0xff) {
        test::fail("a shared-memory access outside the block's " + std::to_string(smem_bytes_) + " bytes");
      }
    }
  }

  // --- for the contexts: collectives --------------------------------------------------------
  void sync(int tid) { park(tid, Wait::Cta, nullptr); }
  // Parks until the 32 lanes of tid's warp all wait at the collective named `what` (a string
  // literal: compared by address).
  void warp_wait(int tid, const char* what) { park(tid, Wait::Warp, what); }
  void syncwarp(int tid) { park(tid, Wait::Warp, kSyncwarp); }
  static constexpr const char* kSyncwarp = "__syncwarp";

  // Per-lane exchange slots for warp collectives.
  const void* ptr_slot[kMaxThreads];
  int int_slot[kMaxThreads];
  float float_slot[kMaxThreads];

  // --- for the contexts: shared-memory accesses --------------------------------------------------
  bool in_smem(const void* p, size_t n) const {
    const unsigned char* c = static_cast<const unsigned char*>(p);
    return c >= smem_ && c + n <= smem_ + smem_bytes_;
  }
  // `who` is a thread id, or warp_actor(w) for a wmma access by warp w.
  static int warp_actor(int w) { return kMaxThreads + w; }
  void read(int who, const void* p, size_t n, const char* what) { access(who, p, n, false, what); }
  void write(int who, const void* p, size_t n, const char* what) { access(who, p, n, true, what); }

  // --- for the contexts: cp.async -----------------------------------------------------------------
  void cp_async16(int tid, void* dst, const void* src, bool valid) {
    if (reinterpret_cast<uintptr_t>(dst) & 15u) fail("cp.async to a shared address not 16-byte aligned");
    if (reinterpret_cast<uintptr_t>(src) & 15u) fail("cp.async from a global address not 16-byte aligned");
    if (!in_smem(dst, 16)) fail("cp.async destination outside the block's shared memory");
    Copy c{static_cast<unsigned char*>(dst), {}};
    if (valid) {
      bool inside = false;
      for (const auto& g : globals_) {
        inside = inside || (static_cast<const char*>(src) >= g.first && static_cast<const char*>(src) + 16 <= g.first + g.second);
      }
      if (!inside) fail("cp.async reads 16 bytes outside every operand buffer");
      std::memcpy(c.bytes, src, 16);
    } else {
      std::memset(c.bytes, 0, 16);  // src-size 0: zero fill, nothing read
    }
    // Issued now, lands some time before its wait: prior accesses of other threads in this epoch
    // race with it already.
    const size_t g0 = granule(c.dst);
    for (size_t g = g0; g < g0 + 8; ++g) {
      if (shadow_[g].pending) fail("cp.async into bytes another copy is still writing");
      check(tid, shadow_[g], true, "cp.async");
      shadow_[g].pending = 1;
    }
    open_[tid].push_back(c);
  }
  void cp_async_commit(int tid) {
    groups_[tid].push_back(std::move(open_[tid]));
    open_[tid].clear();
  }
  void cp_async_wait(int tid, int keep) {
    auto& gs = groups_[tid];
    while (int(gs.size()) > keep) {
      for (const Copy& c : gs.front()) {
        const size_t g0 = granule(c.dst);
        for (size_t g = g0; g < g0 + 8; ++g) shadow_[g].pending = 0;
        access(tid, c.dst, 16, true, "cp.async landing");
        std::memcpy(c.dst, c.bytes, 16);
      }
      gs.erase(gs.begin());
    }
  }

  // Records a failure of the running thread and ends it (exceptions cannot cross the switch).
  [[noreturn]] void fail(const std::string& m) { test::fail(m); }

  // The coroutine entry: the thread id comes through start_tid.
  static void entry() {
    Block* b = current();
    const int tid = start_tid();
    try {
      b->body_(tid);
    } catch (const test::Failure& f) {
      if (b->failure_.empty()) b->failure_ = "thread " + std::to_string(tid) + ": " + f.message;
    }
    b->state_[tid] = Wait::Done;
  }

 private:
  struct Record {
    int16_t who = -1;  // -1: none; -2: several (reads only)
    int16_t warp = -1;  // warp of the accessors; -2: several warps
    uint32_t epoch = 0, warp_epoch = 0;
  };
  struct Shadow {
    Record w, r;
    uint8_t pending = 0;
  };
  struct Copy {
    unsigned char* dst;
    unsigned char bytes[16];
  };

  static Block*& current() {
    static thread_local Block* b = nullptr;
    return b;
  }
  static int& start_tid() {
    static thread_local int t = 0;
    return t;
  }

  int warp_of(int who) const { return who >= kMaxThreads ? who - kMaxThreads : who / 32; }
  size_t granule(const void* p) const { return size_t(static_cast<const unsigned char*>(p) - smem_) / 2; }

  void park(int tid, Wait w, const char* what) {
    state_[tid] = w;
    what_[tid] = what;
    swapcontext(&ctx_[tid], &scheduler_);
  }

  // Whether a previous access `r` is ordered before one by `who` now.
  bool ordered(const Record& r, int who) const {
    if (r.who == -1 || r.epoch != epoch_) return true;
    const int w = warp_of(who);
    if (r.warp != w) return false;  // another warp (or several) in this barrier interval
    if (r.warp_epoch != warp_epoch_[w]) return true;
    return r.who == who;
  }
  void check(int who, const Shadow& s, bool is_write, const char* what) {
    if (!ordered(s.w, who)) {
      fail(std::string(what) + " by " + actor(who) + " races with a write by " + actor(s.w.who) +
           " (no barrier between them)");
    }
    if (is_write && !ordered(s.r, who)) {
      fail(std::string(what) + " by " + actor(who) + " races with a read by " + actor(s.r.who) +
           " (no barrier between them)");
    }
  }
  std::string actor(int who) const {
    if (who == -2) return "several threads";
    if (who >= kMaxThreads) return "warp " + std::to_string(who - kMaxThreads) + " (wmma)";
    return "thread " + std::to_string(who);
  }
  void access(int who, const void* p, size_t n, bool is_write, const char* what) {
    if (!in_smem(p, n)) fail(std::string(what) + ": outside the block's shared memory");
    const int w = warp_of(who);
    const size_t g0 = granule(p), g1 = granule(static_cast<const unsigned char*>(p) + n - 1);
    for (size_t g = g0; g <= g1; ++g) {
      Shadow& s = shadow_[g];
      if (s.pending) {
        fail(std::string(what) + " by " + actor(who) + " of shared bytes a cp.async is still writing " +
             "(its group not waited for, or read before the barrier after the wait)");
      }
      check(who, s, is_write, what);
      Record now{int16_t(who), int16_t(w), epoch_, warp_epoch_[w]};
      if (is_write) {
        s.w = now;
        s.r = Record{};  // later accesses ordered after this write are ordered after those reads
      } else if (ordered(s.r, who) && (s.r.who == -1 || s.r.epoch != epoch_ || s.r.warp_epoch != warp_epoch_[w])) {
        s.r = now;
      } else if (s.r.who != who) {
        s.r.who = -2;
        if (s.r.warp != w) s.r.warp = -2;
      }
    }
  }

  std::string describe_parked() const {
    std::string s;
    int shown = 0;
    for (int t = 0; t < nthreads_ && shown < 4; ++t) {
      if (state_[t] == Wait::Done) continue;
      s += "thread " + std::to_string(t) + " at " + (state_[t] == Wait::Cta ? "__syncthreads" : what_[t]) + "; ";
      ++shown;
    }
    int done = 0;
    for (int t = 0; t < nthreads_; ++t) done += state_[t] == Wait::Done;
    return s + std::to_string(done) + " threads exited";
  }

  int nthreads_;
  size_t smem_bytes_;
  int idx_[3] = {0, 0, 0};
  std::vector<unsigned char> store_;
  unsigned char* smem_ = nullptr;
  std::vector<Shadow> shadow_;
  std::unique_ptr<char[]> stacks_;
  std::function<void(int)> body_;
  ucontext_t scheduler_{};
  ucontext_t ctx_[kMaxThreads];
  Wait state_[kMaxThreads];
  const char* what_[kMaxThreads] = {};
  bool started_[kMaxThreads] = {};
  std::vector<Copy> open_[kMaxThreads];
  std::vector<std::vector<Copy>> groups_[kMaxThreads];
  // Epochs never restart, so records left by an earlier block are ordered before this one's.
  uint32_t epoch_ = 1;
  uint32_t warp_epoch_[kWarps] = {};
  std::vector<std::pair<const char*, size_t>> globals_;
  std::string failure_;
};

// What every kernel body's emulated execution context shares: which thread and block this is,
// the barriers, and shared-memory accesses the race detector sees.
struct Thread {
  Block* blk;
  int tid;
  int thread() const { return tid; }
  int threads() const { return blk->threads(); }
  int block_x() const { return blk->block(0); }
  int block_y() const { return blk->block(1); }
  int block_z() const { return blk->block(2); }
  void sync() { blk->sync(tid); }
  void syncwarp() { blk->syncwarp(tid); }
  template <typename V>
  V lds(const V* p) {
    blk->read(tid, p, sizeof(V), "shared load");
    return *p;
  }
  template <typename V>
  void sts(V* p, V v) {
    blk->write(tid, p, sizeof(V), "shared store");
    *p = v;
  }
};

// A 16-byte aligned run of `n` 2-byte elements between all-ones guards (NaN as f16 and bf16), for
// the global operands of an emulated kernel: a write past either end shows in guards_intact().
struct GuardedBuffer {
  std::vector<uint16_t> store;
  uint16_t* data = nullptr;
  size_t n = 0;
  explicit GuardedBuffer(size_t count) : store(count + 80, 0xffff), n(count) {
    data = store.data() + 32;
    while (reinterpret_cast<uintptr_t>(data) & 15u) ++data;
  }
  bool guards_intact() const {
    for (const uint16_t* g = store.data(); g < data; ++g)
      if (*g != 0xffff) return false;
    for (const uint16_t* g = data + n; g < store.data() + store.size(); ++g)
      if (*g != 0xffff) return false;
    return true;
  }
};

}  // namespace pia::simt
