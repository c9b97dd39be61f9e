// Errors, streams, the caching allocator and copies of libpia_cuda.so.
//
// The allocator keeps freed blocks per device and hands them out again (cudaMalloc/cudaFree
// synchronise the whole device, far too slow per op). Reuse is safe because every kernel runs on
// the one stream of its device: a block freed on the host while a kernel that reads it is still
// queued can only be written by work queued after it.
#include <cstdarg>
#include <cstdio>
#include <map>
#include <mutex>
#include <unordered_map>

#include "common.cuh"
#include "kernels.cuh"

namespace pia_cuda {

namespace {

thread_local char g_error[1024];

constexpr int kMaxDevices = 64;

struct DeviceState {
  std::mutex mu;
  cudaStream_t stream = nullptr;
  cudaEvent_t t0 = nullptr, t1 = nullptr;
  std::multimap<size_t, void*> free_blocks;      // size -> block
  std::unordered_map<void*, size_t> block_size;  // every block we hold, free or not
  size_t in_use = 0, peak_in_use = 0, reserved = 0, peak_reserved = 0;
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
    d.block_size.erase(kv.second);
    d.reserved -= kv.first;
  }
  d.free_blocks.clear();
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

int dev_malloc(int device, size_t bytes, void** out) {
  *out = nullptr;
  if (int rc = use_device(device)) return rc;
  DeviceState& d = g_dev[device];
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(d.mu);
  // Best fit among cached blocks, wasting at most a quarter of the block.
  auto it = d.free_blocks.lower_bound(size);
  if (it != d.free_blocks.end() && it->first - size <= it->first / 4) {
    *out = it->second;
    d.in_use += it->first;
    d.free_blocks.erase(it);
  } else {
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, size);
    if (e == cudaErrorMemoryAllocation) {
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
      set_error("CUDA out of memory on device %d: needed %.1f MiB, free %.1f MiB of %.1f MiB (%.1f MiB held by "
                "pia-animate) (%s)",
                device, double(size) / 1048576.0, double(free_b) / 1048576.0, double(total_b) / 1048576.0,
                double(d.in_use) / 1048576.0, cudaGetErrorString(e));
      return e == cudaErrorMemoryAllocation ? PIA_CUDA_ERR_OOM : PIA_CUDA_ERR;
    }
    *out = p;
    d.block_size[p] = size;
    d.reserved += size;
    d.in_use += size;
    if (d.reserved > d.peak_reserved) d.peak_reserved = d.reserved;
  }
  if (d.in_use > d.peak_in_use) d.peak_in_use = d.in_use;
  return PIA_CUDA_OK;
}

void dev_free(int device, void* p) {
  if (!p || !state(device)) return;
  DeviceState& d = g_dev[device];
  std::lock_guard<std::mutex> lock(d.mu);
  auto it = d.block_size.find(p);
  if (it == d.block_size.end()) return;  // not ours: never hand foreign memory to cudaFree
  d.in_use -= it->second;
  d.free_blocks.emplace(it->second, p);
}

int scratch_alloc(int device, size_t bytes, void** out) { return dev_malloc(device, bytes, out); }
void scratch_free(int device, void* p) { dev_free(device, p); }

int memcpy_h2d(int device, void* dst, const void* src, size_t bytes) {
  if (int rc = use_device(device)) return rc;
  if (!bytes) return PIA_CUDA_OK;
  // From pageable memory the call returns once the source was staged, so the caller may free it.
  return check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()), "cudaMemcpyAsync (to device)");
}

int memcpy_d2h(int device, void* dst, const void* src, size_t bytes) {
  if (int rc = use_device(device)) return rc;
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
  cudaStream_t s = stream();
  DeviceState& d = g_dev[device];
  cudaStreamSynchronize(s);
  std::lock_guard<std::mutex> lock(d.mu);
  release_cache(d);
  return PIA_CUDA_OK;
}

int timer_start(int device) {
  if (int rc = use_device(device)) return rc;
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

}  // namespace pia_cuda
