#include "host_allocator.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../core/errors.h"

namespace pia::cpu {

namespace {

// Below this, malloc's own free lists do the job.
constexpr size_t kMinCached = size_t(1) << 20;
constexpr size_t kHuge = size_t(2) << 20;

class BlockCache {
 public:
  // Never destroyed: tensors may be freed during static destruction at exit.
  static BlockCache& get() {
    static BlockCache* c = new BlockCache();
    return *c;
  }

  void* take(size_t bytes, size_t& capacity) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      // Best fit among blocks no more than a quarter larger than asked; the most recently freed
      // among equals (likeliest still in cache).
      size_t best = blocks_.size();
      for (size_t i = 0; i < blocks_.size(); ++i) {
        const size_t c = blocks_[i].capacity;
        if (c >= bytes && c <= bytes + bytes / 4 && (best == blocks_.size() || c <= blocks_[best].capacity)) best = i;
      }
      if (best < blocks_.size()) {
        void* p = blocks_[best].ptr;
        capacity = blocks_[best].capacity;
        cached_ -= capacity;
        blocks_.erase(blocks_.begin() + long(best));
        return p;
      }
    }
    capacity = (bytes + kHuge - 1) / kHuge * kHuge;
    void* p = std::aligned_alloc(kHuge, capacity);
    if (!p) {
      release();
      p = std::aligned_alloc(kHuge, capacity);
    }
    if (!p) throw_error("E_OUT_OF_MEMORY", "could not allocate " + std::to_string(bytes) + " bytes of host memory");
#ifdef MADV_HUGEPAGE
    // Fewer, larger page faults where transparent huge pages are in "madvise" mode.
    madvise(p, capacity, MADV_HUGEPAGE);
#endif
    return p;
  }

  void give(void* p, size_t capacity) {
    std::vector<void*> drop;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (capacity > limit_) {
        drop.push_back(p);
      } else {
        blocks_.push_back({p, capacity});
        cached_ += capacity;
        while (cached_ > limit_) {  // oldest first
          drop.push_back(blocks_.front().ptr);
          cached_ -= blocks_.front().capacity;
          blocks_.erase(blocks_.begin());
        }
      }
    }
    for (void* d : drop) std::free(d);
  }

  size_t cached() {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_;
  }

  void release() {
    std::vector<Block> all;
    {
      std::lock_guard<std::mutex> lock(mu_);
      all.swap(blocks_);
      cached_ = 0;
    }
    for (const Block& b : all) std::free(b.ptr);
  }

 private:
  struct Block {
    void* ptr;
    size_t capacity;
  };
  BlockCache() {
    // PIA_CPU_CACHE_MB caps the memory kept for reuse; by default an eighth of RAM, at most 4 GiB.
    if (const char* e = std::getenv("PIA_CPU_CACHE_MB")) {
      limit_ = size_t(std::strtoull(e, nullptr, 10)) << 20;
    } else {
      const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
      const size_t ram = pages > 0 && page > 0 ? size_t(pages) * size_t(page) : (size_t(8) << 30);
      limit_ = std::min(ram / 8, size_t(4) << 30);
    }
  }
  std::mutex mu_;
  std::vector<Block> blocks_;
  size_t cached_ = 0, limit_ = 0;
};

}  // namespace

Tensor new_tensor(const Shape& shape, DType dtype) {
  const size_t bytes = size_t(shape_numel(shape)) * dtype_size(dtype);
  if (bytes < kMinCached) return Tensor::empty(shape, dtype);
  size_t capacity = 0;
  void* p = BlockCache::get().take(bytes, capacity);
  auto storage = Storage::adopt(p, bytes, Device::CPU, [capacity](void* q) { BlockCache::get().give(q, capacity); });
  return Tensor::from_storage(storage, 0, shape, dtype);
}

size_t cached_bytes() { return BlockCache::get().cached(); }
void release_cached() { BlockCache::get().release(); }

}  // namespace pia::cpu
