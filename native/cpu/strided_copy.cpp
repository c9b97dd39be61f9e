#include <algorithm>
#include <cstring>

#include "../core/thread_pool.h"
#include "kernels.h"

namespace pia::cpu {

namespace {

template <typename T>
void copy_impl(const T* src, const Shape& shape, const Shape& st, T* dst) {
  const int64_t nd = int64_t(shape.size());
  if (nd == 0) {
    dst[0] = src[0];
    return;
  }
  const Shape ost = contiguous_strides(shape);
  const int64_t last = nd - 1, L = shape[size_t(last)], sl = st[size_t(last)];
  // The dim the source walks contiguously, if the output's last dim does not.
  int64_t f = -1;
  if (sl != 1) {
    for (int64_t d = 0; d < last; ++d)
      if (st[size_t(d)] == 1 && shape[size_t(d)] > 1) f = d;
  }
  if (f < 0) {
    const int64_t rows = shape_numel(shape) / std::max<int64_t>(L, 1);
    parallel_for(0, rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(L, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        int64_t rem = r, off = 0;
        for (int64_t d = last - 1; d >= 0; --d) {
          off += (rem % shape[size_t(d)]) * st[size_t(d)];
          rem /= shape[size_t(d)];
        }
        const T* s = src + off;
        T* o = dst + r * L;
        if (sl == 1) {
          std::memcpy(o, s, sizeof(T) * size_t(L));
        } else {
          for (int64_t i = 0; i < L; ++i) o[i] = s[i * sl];
        }
      }
    });
    return;
  }
  // Tiled transpose between dims f (source-contiguous) and last (output-contiguous). A task takes
  // TB output columns and sweeps all of f, so its TB source rows are each read front to back
  // (streams the hardware prefetchers follow) and every cache line is used whole.
  constexpr int64_t TB = 32;
  const int64_t F = shape[size_t(f)], ltiles = (L + TB - 1) / TB;
  const int64_t outer = shape_numel(shape) / std::max<int64_t>(1, F * L);
  const int64_t osf = ost[size_t(f)];
  parallel_for(0, outer * ltiles, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      int64_t rem = t / ltiles, soff = 0, doff = 0;
      for (int64_t d = last - 1; d >= 0; --d) {
        if (d == f) continue;
        const int64_t i = rem % shape[size_t(d)];
        rem /= shape[size_t(d)];
        soff += i * st[size_t(d)];
        doff += i * ost[size_t(d)];
      }
      const int64_t l0 = (t % ltiles) * TB, l1 = std::min(L, l0 + TB);
      for (int64_t f0 = 0; f0 < F; f0 += TB) {
        const int64_t f1 = std::min(F, f0 + TB);
        for (int64_t i = f0; i < f1; ++i) {
          T* o = dst + doff + i * osf;
          const T* s = src + soff + i;
          for (int64_t j = l0; j < l1; ++j) o[j] = s[j * sl];
        }
      }
    }
  });
}

}  // namespace

void strided_copy(const void* src, const Shape& shape, const Shape& st, void* dst, size_t elem_size) {
  if (elem_size == 4) {
    copy_impl(static_cast<const uint32_t*>(src), shape, st, static_cast<uint32_t*>(dst));
  } else {
    copy_impl(static_cast<const uint16_t*>(src), shape, st, static_cast<uint16_t*>(dst));
  }
}

}  // namespace pia::cpu
