// diffusers' FreeU fourier_filter (utils/torch_utils.py): fftn over (H, W), fftshift, multiply the
// centred box [crow-t, crow+t) × [ccol-t, ccol+t) by `scale`, ifftshift, ifftn, real part.
// fftshift/ifftshift around an elementwise mask cancel out, so we scale the matching unshifted
// frequencies instead. Transforms run in double (radix-2 when the size is a power of two, a
// direct DFT otherwise) and round to float once; torch does them in complex64.
#include <algorithm>
#include <cmath>
#include <complex>
#include <vector>

#include "../core/thread_pool.h"
#include "kernels.h"

namespace pia::cpu {

namespace {

using cd = std::complex<double>;

// One length-n transform plan: forward uses e^{-2πi jk/n}; inverse conjugates and divides by n.
struct Dft {
  int64_t n = 0;
  bool pow2 = false;
  std::vector<cd> tw;  // e^{-2πi j/n}, j < n
  explicit Dft(int64_t len) : n(len), pow2(len > 0 && (len & (len - 1)) == 0), tw(size_t(len)) {
    for (int64_t j = 0; j < n; ++j) {
      const double a = -2.0 * M_PI * double(j) / double(n);
      tw[size_t(j)] = cd(std::cos(a), std::sin(a));
    }
  }
  // In place on x[0], x[stride], ... with scratch `tmp` of length n.
  void run(cd* x, int64_t stride, bool inverse, std::vector<cd>& tmp) const {
    for (int64_t i = 0; i < n; ++i) tmp[size_t(i)] = x[i * stride];
    if (pow2) {
      for (int64_t i = 1, j = 0; i < n; ++i) {  // bit reversal
        int64_t bit = n >> 1;
        for (; j & bit; bit >>= 1) j ^= bit;
        j ^= bit;
        if (i < j) std::swap(tmp[size_t(i)], tmp[size_t(j)]);
      }
      for (int64_t len = 2; len <= n; len <<= 1) {
        const int64_t step = n / len;
        for (int64_t i = 0; i < n; i += len) {
          for (int64_t j = 0; j < len / 2; ++j) {
            cd w = tw[size_t(j * step)];
            if (inverse) w = std::conj(w);
            const cd u = tmp[size_t(i + j)], t = w * tmp[size_t(i + j + len / 2)];
            tmp[size_t(i + j)] = u + t;
            tmp[size_t(i + j + len / 2)] = u - t;
          }
        }
      }
      for (int64_t i = 0; i < n; ++i) x[i * stride] = inverse ? tmp[size_t(i)] / double(n) : tmp[size_t(i)];
      return;
    }
    for (int64_t kf = 0; kf < n; ++kf) {
      cd s = 0;
      for (int64_t j = 0; j < n; ++j) {
        cd w = tw[size_t((j * kf) % n)];
        s += tmp[size_t(j)] * (inverse ? std::conj(w) : w);
      }
      x[kf * stride] = inverse ? s / double(n) : s;
    }
  }
};

// Python slice a[start:stop] bounds for a length-n axis (negative start wraps, as in diffusers).
void py_slice(int64_t start, int64_t stop, int64_t n, int64_t& b, int64_t& e) {
  if (start < 0) start = std::max<int64_t>(0, start + n);
  if (stop < 0) stop = std::max<int64_t>(0, stop + n);
  b = std::min(start, n);
  e = std::min(stop, n);
}

}  // namespace

void fourier_filter(const float* x, int64_t planes, int64_t H, int64_t W, int threshold, float scale, float* y) {
  const Dft rows(W), cols(H);
  const int64_t crow = H / 2, ccol = W / 2;
  int64_t rb, re, cb, ce;
  py_slice(crow - threshold, crow + threshold, H, rb, re);
  py_slice(ccol - threshold, ccol + threshold, W, cb, ce);
  // torch multiplies complex64 by a float32 mask holding `scale`
  const double s = double(float(scale));
  parallel_for(0, planes, 1, [&](int64_t b, int64_t e) {
    std::vector<cd> f(size_t(H * W)), tmp(size_t(std::max(H, W)));
    for (int64_t pl = b; pl < e; ++pl) {
      const float* xp = x + pl * H * W;
      for (int64_t i = 0; i < H * W; ++i) f[size_t(i)] = cd(xp[i], 0.0);
      for (int64_t r = 0; r < H; ++r) rows.run(f.data() + r * W, 1, false, tmp);
      for (int64_t c = 0; c < W; ++c) cols.run(f.data() + c, W, false, tmp);
      // shifted index r holds unshifted frequency (r - H/2) mod H
      for (int64_t r = rb; r < re; ++r) {
        const int64_t ur = ((r - crow) % H + H) % H;
        for (int64_t c = cb; c < ce; ++c) {
          const int64_t uc = ((c - ccol) % W + W) % W;
          f[size_t(ur * W + uc)] *= s;
        }
      }
      for (int64_t c = 0; c < W; ++c) cols.run(f.data() + c, W, true, tmp);
      for (int64_t r = 0; r < H; ++r) rows.run(f.data() + r * W, 1, true, tmp);
      float* yp = y + pl * H * W;
      for (int64_t i = 0; i < H * W; ++i) yp[i] = float(f[size_t(i)].real());
    }
  });
}

}  // namespace pia::cpu
