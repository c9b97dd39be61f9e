// Errors, streams, the caching allocator, copies and CUDA graphs of libpia_cuda.so.
//
// The allocator keeps freed blocks per device and hands them out again (cudaMalloc/cudaFree
// synchronise the whole device, far too slow per op). Reuse is safe because every kernel runs on
// the one stream of its device: a block freed on the host while a kernel that reads it is still
// queued can only be written by work queued after it.
//
// A CUDA graph replays its kernels with the addresses they had when it was captured, long after
// the host code that allocated and freed those blocks has moved on. So every graph owns a pool:
// what its capture allocates comes from (and returns to) that pool only, and the pool's blocks
// are never handed to anyone else while the graph lives. Memory outside the pool (what callers
// keep between steps) is therefore never written by a replay.
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common.cuh"
#include "kernels.cuh"

namespace pia_cuda {

namespace {

thread_local char g_error[1024];

constexpr int kMaxDevices = 64;

struct Block {
  size_t size = 0;
  int pool = 0;  // 0: the shared pool; otherwise the graph pool it belongs to
  bool free = false;
};

struct DeviceState {
  std::mutex mu;
  cudaStream_t stream = nullptr;
  cudaEvent_t t0 = nullptr, t1 = nullptr;
  std::multimap<size_t, void*> free_blocks;                         // shared pool: size -> block
  std::unordered_map<int, std::multimap<size_t, void*>> pool_free;  // graph pools: size -> block
  std::unordered_map<void*, Block> blocks;                          // every block we hold, free or not
  size_t in_use = 0, peak_in_use = 0, reserved = 0, peak_reserved = 0;
  int next_pool = 1;
  // The capture in progress on this device (under mu): its pool and the thread running it.
  int capture_pool = 0;
  std::thread::id capture_owner;
  std::vector<void*> deferred_graphs;  // destroyed by their capturing thread mid-capture

  // The gate (under gate_mu): while one thread captures, every other thread's call into the
  // library waits, since anything another thread queued on the shared stream would be recorded
  // into the graph instead of running. `active` counts calls in progress outside the capture.
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  bool gate_closed = false;
  std::thread::id gate_owner;
  int active = 0;
};

DeviceState g_dev[kMaxDevices];

DeviceState* state(int device) {
  if (device < 0 || device >= kMaxDevices) {
    set_error("device index %d out of range", device);
    return nullptr;
  }
  return &g_dev[device];
}

// Small requests share 512-byte granules; large ones round to 1 MiB so that similar activation
// sizes (which differ by a few rows) land on the same blocks.
size_t round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (bytes <= (size_t(1) << 20)) return (bytes + 511) / 512 * 512;
  return (bytes + (size_t(1) << 20) - 1) >> 20 << 20;
}

// Called with the device lock held.
void release_cache(DeviceState& d) {
  for (auto& kv : d.free_blocks) {
    cudaFree(kv.second);
    d.blocks.erase(kv.second);
    d.reserved -= kv.first;
  }
  d.free_blocks.clear();
}

// Gives a graph pool's free blocks back to the driver. A block still held by a tensor (the
// graph's output, say) joins the shared pool instead, so that its owner's later free neither
// reaches a block the driver may have handed out again nor leaks it. Called with the device lock
// held and the stream idle (no replay or captured-around work may still touch the pool).
void release_pool(DeviceState& d, int pool) {
  for (auto it = d.blocks.begin(); it != d.blocks.end();) {
    if (it->second.pool != pool) {
      ++it;
      continue;
    }
    if (it->second.free) {
      cudaFree(it->first);
      d.reserved -= it->second.size;
      it = d.blocks.erase(it);
    } else {
      it->second.pool = 0;
      ++it;
    }
  }
  d.pool_free.erase(pool);
}

bool capturing_here(DeviceState& d) {
  std::lock_guard<std::mutex> lock(d.mu);
  return d.capture_pool != 0 && d.capture_owner == std::this_thread::get_id();
}

int refuse_in_capture(DeviceState& d, const char* what) {
  if (!capturing_here(d)) return PIA_CUDA_OK;
  set_error("%s cannot be part of a CUDA graph capture", what);
  return PIA_CUDA_ERR;
}

struct Graph {
  cudaGraphExec_t exec = nullptr;
  int pool = 0;
};

// Ends this thread's capture bookkeeping: later allocations go to the shared pool again.
int close_capture(DeviceState& d) {
  std::lock_guard<std::mutex> lock(d.mu);
  const int pool = d.capture_pool;
  d.capture_pool = 0;
  d.capture_owner = std::thread::id();
  return pool;
}

void open_gate(DeviceState& d) {
  std::lock_guard<std::mutex> lock(d.gate_mu);
  d.gate_closed = false;
  d.gate_owner = std::thread::id();
  d.gate_cv.notify_all();
}

void destroy_graph(DeviceState& d, Graph* g) {
  cudaStreamSynchronize(d.stream);  // replays still queued read the pool
  if (g->exec) cudaGraphExecDestroy(g->exec);
  {
    std::lock_guard<std::mutex> lock(d.mu);
    release_pool(d, g->pool);
  }
  delete g;
}

// What capture_end and capture_abort share once the stream has left capture mode.
void finish_capture(DeviceState& d, int pool, bool keep_pool) {
  // The capture adopted blocks that eager work queued before it may still be using.
  cudaStreamSynchronize(d.stream);
  std::vector<void*> deferred;
  {
    std::lock_guard<std::mutex> lock(d.mu);
    if (!keep_pool) release_pool(d, pool);
    deferred.swap(d.deferred_graphs);
  }
  for (void* g : deferred) destroy_graph(d, static_cast<Graph*>(g));
  open_gate(d);
}

}  // namespace

void set_error(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(g_error, sizeof g_error, fmt, ap);
  va_end(ap);
}

const char* last_error() { return g_error; }

int check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return PIA_CUDA_OK;
  set_error("%s: %s", what, cudaGetErrorString(e));
  return e == cudaErrorMemoryAllocation ? PIA_CUDA_ERR_OOM : PIA_CUDA_ERR;
}

int check_launch(const char* what) { return check(cudaGetLastError(), what); }

int use_device(int device) {
  if (!state(device)) return PIA_CUDA_ERR_ARG;
  return check(cudaSetDevice(device), "cudaSetDevice");
}

cudaStream_t stream() {
  int device = 0;
  cudaGetDevice(&device);
  DeviceState& d = g_dev[device];
  std::lock_guard<std::mutex> lock(d.mu);
  if (!d.stream) cudaStreamCreateWithFlags(&d.stream, cudaStreamNonBlocking);
  return d.stream;
}

namespace {

int malloc_impl(int device, size_t bytes, void** out, bool may_use_capture_pool) {
  *out = nullptr;
  if (int rc = use_device(device)) return rc;
  DeviceState& d = g_dev[device];
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(d.mu);
  const bool in_capture = d.capture_pool != 0 && d.capture_owner == std::this_thread::get_id();
  const int pool = in_capture && may_use_capture_pool ? d.capture_pool : 0;
  std::multimap<size_t, void*>& free_list = pool ? d.pool_free[pool] : d.free_blocks;
  // Best fit among cached blocks, wasting at most a quarter of the block.
  auto it = free_list.lower_bound(size);
  if (it != free_list.end() && it->first - size <= it->first / 4) {
    *out = it->second;
    d.in_use += it->first;
    d.blocks[it->second].free = false;
    free_list.erase(it);
  } else {
    void* p = nullptr;
    // Inside a capture this is allowed because capture_begin uses cudaStreamCaptureModeRelaxed;
    // the block is not part of the graph, it simply stays in the graph's pool for every replay.
    cudaError_t e = cudaMalloc(&p, size);
    if (e == cudaErrorMemoryAllocation && !in_capture) {
      // Give the cache back to the driver and try once more.
      cudaGetLastError();
      cudaStreamSynchronize(d.stream);
      release_cache(d);
      e = cudaMalloc(&p, size);
    }
    if (e != cudaSuccess) {
      cudaGetLastError();  // allocation failures are not sticky; clear it for the next call
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      // During a capture the cache cannot be released (that synchronises the stream being
      // captured): the capture fails instead and the caller runs the step eagerly.
      set_error("CUDA out of memory on device %d%s: needed %.1f MiB, free %.1f MiB of %.1f MiB (%.1f MiB held by "
                "pia-animate) (%s)",
                device, in_capture ? " during CUDA graph capture" : "", double(size) / 1048576.0,
                double(free_b) / 1048576.0, double(total_b) / 1048576.0, double(d.in_use) / 1048576.0,
                cudaGetErrorString(e));
      return e == cudaErrorMemoryAllocation ? PIA_CUDA_ERR_OOM : PIA_CUDA_ERR;
    }
    *out = p;
    d.blocks[p] = Block{size, pool, false};
    d.reserved += size;
    d.in_use += size;
    if (d.reserved > d.peak_reserved) d.peak_reserved = d.reserved;
  }
  if (d.in_use > d.peak_in_use) d.peak_in_use = d.in_use;
  return PIA_CUDA_OK;
}

}  // namespace

int dev_malloc(int device, size_t bytes, void** out) { return malloc_impl(device, bytes, out, true); }
int dev_malloc_shared(int device, size_t bytes, void** out) { return malloc_impl(device, bytes, out, false); }

void dev_free(int device, void* p) {
  if (!p || !state(device)) return;
  DeviceState& d = g_dev[device];
  std::lock_guard<std::mutex> lock(d.mu);
  auto it = d.blocks.find(p);
  if (it == d.blocks.end() || it->second.free) return;  // not ours: never hand foreign memory to cudaFree
  Block& b = it->second;
  d.in_use -= b.size;
  b.free = true;
  // A shared block freed by the capturing thread may have been read by captured kernels, which
  // every replay reads again: it belongs to the graph from now on.
  if (b.pool == 0 && d.capture_pool != 0 && d.capture_owner == std::this_thread::get_id()) b.pool = d.capture_pool;
  if (b.pool == 0) d.free_blocks.emplace(b.size, p);
  else d.pool_free[b.pool].emplace(b.size, p);
}

int scratch_alloc(int device, size_t bytes, void** out) { return dev_malloc(device, bytes, out); }
void scratch_free(int device, void* p) { dev_free(device, p); }

int memcpy_h2d(int device, void* dst, const void* src, size_t bytes) {
  if (int rc = use_device(device)) return rc;
  // A captured copy would read this host buffer again at every replay, long after the caller
  // reused it; per-step inputs are copied into the graph's buffers before the launch instead.
  if (int rc = refuse_in_capture(g_dev[device], "a host-to-device copy")) return rc;
  if (!bytes) return PIA_CUDA_OK;
  // From pageable memory the call returns once the source was staged, so the caller may free it.
  return check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()), "cudaMemcpyAsync (to device)");
}

int memcpy_d2h(int device, void* dst, const void* src, size_t bytes) {
  if (int rc = use_device(device)) return rc;
  if (int rc = refuse_in_capture(g_dev[device], "a device-to-host copy")) return rc;
  cudaStream_t s = stream();
  if (bytes) {
    if (int rc = check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync (to host)")) {
      return rc;
    }
  }
  return check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

int memset_zero(int device, void* dst, size_t bytes) {
  if (int rc = use_device(device)) return rc;
  if (!bytes) return PIA_CUDA_OK;
  return check(cudaMemsetAsync(dst, 0, bytes, stream()), "cudaMemsetAsync");
}

int synchronize(int device) {
  if (int rc = use_device(device)) return rc;
  if (int rc = refuse_in_capture(g_dev[device], "synchronize")) return rc;
  return check(cudaStreamSynchronize(stream()), "cudaStreamSynchronize");
}

int memory_stats(int device, size_t* in_use, size_t* peak_in_use, size_t* reserved, size_t* peak_reserved) {
  DeviceState* d = state(device);
  if (!d) return PIA_CUDA_ERR_ARG;
  std::lock_guard<std::mutex> lock(d->mu);
  if (in_use) *in_use = d->in_use;
  if (peak_in_use) *peak_in_use = d->peak_in_use;
  if (reserved) *reserved = d->reserved;
  if (peak_reserved) *peak_reserved = d->peak_reserved;
  return PIA_CUDA_OK;
}

int reset_peak(int device) {
  DeviceState* d = state(device);
  if (!d) return PIA_CUDA_ERR_ARG;
  std::lock_guard<std::mutex> lock(d->mu);
  d->peak_in_use = d->in_use;
  d->peak_reserved = d->reserved;
  return PIA_CUDA_OK;
}

int empty_cache(int device) {
  if (int rc = use_device(device)) return rc;
  if (int rc = refuse_in_capture(g_dev[device], "empty_cache")) return rc;
  cudaStream_t s = stream();
  DeviceState& d = g_dev[device];
  cudaStreamSynchronize(s);
  std::lock_guard<std::mutex> lock(d.mu);
  release_cache(d);
  return PIA_CUDA_OK;
}

int timer_start(int device) {
  if (int rc = use_device(device)) return rc;
  if (int rc = refuse_in_capture(g_dev[device], "a timer")) return rc;
  cudaStream_t s = stream();
  DeviceState& d = g_dev[device];
  if (!d.t0) {
    if (int rc = check(cudaEventCreate(&d.t0), "cudaEventCreate")) return rc;
    if (int rc = check(cudaEventCreate(&d.t1), "cudaEventCreate")) return rc;
  }
  return check(cudaEventRecord(d.t0, s), "cudaEventRecord");
}

int timer_stop(int device, double* seconds) {
  if (int rc = use_device(device)) return rc;
  if (int rc = refuse_in_capture(g_dev[device], "a timer")) return rc;
  DeviceState& d = g_dev[device];
  if (!d.t0) {
    set_error("timer_stop without timer_start");
    return PIA_CUDA_ERR_ARG;
  }
  if (int rc = check(cudaEventRecord(d.t1, stream()), "cudaEventRecord")) return rc;
  if (int rc = check(cudaEventSynchronize(d.t1), "cudaEventSynchronize")) return rc;
  float ms = 0;
  if (int rc = check(cudaEventElapsedTime(&ms, d.t0, d.t1), "cudaEventElapsedTime")) return rc;
  *seconds = double(ms) * 1e-3;
  return PIA_CUDA_OK;
}

bool capturing_here(int device) { return device >= 0 && device < kMaxDevices && capturing_here(g_dev[device]); }

StreamGate::StreamGate(int device) {
  if (device < 0 || device >= kMaxDevices) return;  // the call itself reports the bad index
  DeviceState& d = g_dev[device];
  std::unique_lock<std::mutex> lock(d.gate_mu);
  if (d.gate_closed && d.gate_owner == std::this_thread::get_id()) return;  // the capture's own work
  d.gate_cv.wait(lock, [&] { return !d.gate_closed; });
  ++d.active;
  device_ = device;
}

StreamGate::~StreamGate() {
  if (device_ < 0) return;
  DeviceState& d = g_dev[device_];
  std::lock_guard<std::mutex> lock(d.gate_mu);
  if (--d.active == 0) d.gate_cv.notify_all();
}

int capture_begin(int device) {
  if (int rc = use_device(device)) return rc;
  DeviceState& d = g_dev[device];
  cudaStream_t s = stream();
  const std::thread::id me = std::this_thread::get_id();
  {
    std::unique_lock<std::mutex> lock(d.gate_mu);
    if (d.gate_closed && d.gate_owner == me) {
      set_error("capture_begin: this thread is already capturing on device %d", device);
      return PIA_CUDA_ERR_ARG;
    }
    d.gate_cv.wait(lock, [&] { return !d.gate_closed; });
    d.gate_closed = true;
    d.gate_owner = me;
    // Calls already past the gate finish first: their launches must not land in the graph.
    d.gate_cv.wait(lock, [&] { return d.active == 0; });
  }
  int pool = 0;
  {
    std::lock_guard<std::mutex> lock(d.mu);
    pool = d.next_pool++;
    d.capture_pool = pool;
    d.capture_owner = me;
    d.pool_free[pool];
  }
  // Relaxed, not ThreadLocal or Global: those forbid this thread "potentially unsafe" calls such
  // as cudaMalloc while it captures, and the graph's pool grows by cudaMalloc during the capture
  // (a block the capture needs beyond what the pool holds). What Relaxed no longer checks for us
  // (a synchronising call in the middle of a capture) the library refuses itself: copies to or
  // from the host, synchronize, empty_cache and timers fail with refuse_in_capture, and the OOM
  // path does not release the cache.
  cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed);
  if (e != cudaSuccess) {
    const int rc = check(e, "cudaStreamBeginCapture");
    finish_capture(d, close_capture(d), false);
    return rc;
  }
  return PIA_CUDA_OK;
}

int capture_end(int device, void** graph) {
  *graph = nullptr;
  if (int rc = use_device(device)) return rc;
  DeviceState& d = g_dev[device];
  if (!capturing_here(d)) {
    set_error("capture_end: no capture in progress on this thread");
    return PIA_CUDA_ERR_ARG;
  }
  cudaGraph_t g = nullptr;
  cudaError_t e = cudaStreamEndCapture(stream(), &g);
  const int pool = close_capture(d);
  cudaGraphExec_t exec = nullptr;
  int rc = PIA_CUDA_OK;
  if (e != cudaSuccess || !g) {
    rc = check(e != cudaSuccess ? e : cudaErrorStreamCaptureInvalidated, "cudaStreamEndCapture");
  } else {
    // WithFlags: the same call from CUDA 11.4 to 13, where plain cudaGraphInstantiate took five
    // arguments before CUDA 12 (and 11.8 is the oldest toolkit that builds for sm_90).
    rc = check(cudaGraphInstantiateWithFlags(&exec, g, 0), "cudaGraphInstantiateWithFlags");
  }
  if (g) cudaGraphDestroy(g);  // the executable graph does not need it
  cudaGetLastError();          // capture errors are not sticky; the next op must not see them
  if (rc != PIA_CUDA_OK) {
    finish_capture(d, pool, false);
    return rc;
  }
  *graph = new Graph{exec, pool};
  finish_capture(d, pool, true);
  return PIA_CUDA_OK;
}

void capture_abort(int device) {
  if (use_device(device) != PIA_CUDA_OK) return;
  DeviceState& d = g_dev[device];
  if (!capturing_here(d)) return;
  cudaGraph_t g = nullptr;
  cudaStreamEndCapture(stream(), &g);
  if (g) cudaGraphDestroy(g);
  cudaGetLastError();
  finish_capture(d, close_capture(d), false);
}

int graph_launch(int device, void* graph) {
  if (int rc = use_device(device)) return rc;
  if (!graph) {
    set_error("graph_launch: null graph");
    return PIA_CUDA_ERR_ARG;
  }
  if (int rc = refuse_in_capture(g_dev[device], "a graph launch")) return rc;
  return check(cudaGraphLaunch(static_cast<Graph*>(graph)->exec, stream()), "cudaGraphLaunch");
}

void graph_destroy(int device, void* graph) {
  if (!graph || use_device(device) != PIA_CUDA_OK) return;
  DeviceState& d = g_dev[device];
  stream();
  if (capturing_here(d)) {
    // Destroying waits for the stream, which a capture in progress forbids: later, then.
    std::lock_guard<std::mutex> lock(d.mu);
    d.deferred_graphs.push_back(graph);
    return;
  }
  destroy_graph(d, static_cast<Graph*>(graph));
}

}  // namespace pia_cuda
