// diffusers' FreeU fourier_filter (utils/torch_utils.py): fftn over (H, W), fftshift, multiply the
// centred box rows [crow-t, crow+t) × cols [ccol-t, ccol+t) by `scale`, ifftshift, ifftn, real part.
//
// That is a linear filter touching only the box's frequencies, so instead of two full FFTs we add
// the box's part back scaled by (scale − 1):
//   y = x + (scale − 1) · Re(ifft2(box ∘ fft2(x)))
// and since the box is a product of a row set R and a column set C, both transforms are
// separable DFTs restricted to R and C: O(H·W·(|R| + |C|)) per plane (|R| = |C| = 2 in FreeU)
// and exact for any H, W. Everything runs in double and is rounded to float once; torch does the
// transforms in complex64, so the two agree to float rounding.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/thread_pool.h"
#include "kernels.h"

namespace pia::cpu {

namespace {

// Python slice a[start:stop] bounds for a length-n axis (a negative start wraps, as in diffusers).
void py_slice(int64_t start, int64_t stop, int64_t n, int64_t& b, int64_t& e) {
  if (start < 0) start = std::max<int64_t>(0, start + n);
  if (stop < 0) stop = std::max<int64_t>(0, stop + n);
  b = std::min(start, n);
  e = std::max(b, std::min(stop, n));
}

// Unshifted frequencies of the shifted index range [b, e): shifted r holds (r − n/2) mod n.
std::vector<int64_t> unshift(int64_t b, int64_t e, int64_t n) {
  std::vector<int64_t> f;
  for (int64_t r = b; r < e; ++r) f.push_back(((r - n / 2) % n + n) % n);
  return f;
}

// cos/sin(2π·f·i/n) for each f in freqs, i < n: [freq][i].
void twiddles(const std::vector<int64_t>& freqs, int64_t n, std::vector<double>& c, std::vector<double>& s) {
  c.resize(freqs.size() * size_t(n));
  s.resize(c.size());
  for (size_t k = 0; k < freqs.size(); ++k)
    for (int64_t i = 0; i < n; ++i) {
      // reduce f·i mod n first so the angle stays small and exact
      const double a = 2.0 * M_PI * double((freqs[k] * i) % n) / double(n);
      c[k * size_t(n) + size_t(i)] = std::cos(a);
      s[k * size_t(n) + size_t(i)] = std::sin(a);
    }
}

}  // namespace

void fourier_filter(const float* x, int64_t planes, int64_t H, int64_t W, int threshold, float scale, float* y) {
  const int64_t crow = H / 2, ccol = W / 2;
  int64_t rb, re, cb, ce;
  py_slice(crow - threshold, crow + threshold, H, rb, re);
  py_slice(ccol - threshold, ccol + threshold, W, cb, ce);
  // torch multiplies the complex64 spectrum by a float32 mask holding `scale`
  const double gain = double(float(scale)) - 1.0;
  const std::vector<int64_t> R = unshift(rb, re, H), C = unshift(cb, ce, W);
  const int64_t nr = int64_t(R.size()), nc = int64_t(C.size());
  if (gain == 0.0 || nr == 0 || nc == 0) {
    std::copy(x, x + planes * H * W, y);
    return;
  }
  std::vector<double> rc, rs, cc, cs;
  twiddles(R, H, rc, rs);
  twiddles(C, W, cc, cs);
  const double norm = gain / double(H * W);
  parallel_for(0, planes, 1, [&](int64_t b, int64_t e) {
    // P[y][v] = Σ_x x[y][x]·e^{−2πi v x / W};  X[u][v] = Σ_y P[y][v]·e^{−2πi u y / H}
    std::vector<double> pre(size_t(H * nc)), pim(size_t(H * nc)), xre(size_t(nr * nc)), xim(size_t(nr * nc));
    for (int64_t pl = b; pl < e; ++pl) {
      const float* xp = x + pl * H * W;
      float* yp = y + pl * H * W;
      for (int64_t r = 0; r < H; ++r) {
        const float* row = xp + r * W;
        for (int64_t v = 0; v < nc; ++v) {
          const double* c = cc.data() + v * W;
          const double* s = cs.data() + v * W;
          double a = 0, bb = 0;
          for (int64_t i = 0; i < W; ++i) {
            a += double(row[i]) * c[i];
            bb -= double(row[i]) * s[i];
          }
          pre[size_t(r * nc + v)] = a;
          pim[size_t(r * nc + v)] = bb;
        }
      }
      for (int64_t u = 0; u < nr; ++u)
        for (int64_t v = 0; v < nc; ++v) {
          double a = 0, bb = 0;
          for (int64_t r = 0; r < H; ++r) {
            const double c = rc[size_t(u * H + r)], s = -rs[size_t(u * H + r)];
            const double pr = pre[size_t(r * nc + v)], pi = pim[size_t(r * nc + v)];
            a += pr * c - pi * s;
            bb += pr * s + pi * c;
          }
          xre[size_t(u * nc + v)] = a * norm;
          xim[size_t(u * nc + v)] = bb * norm;
        }
      // back: Q[y][v] = Σ_u X[u][v]·e^{+2πi u y / H};  y += Re Σ_v Q[y][v]·e^{+2πi v x / W}
      for (int64_t r = 0; r < H; ++r) {
        for (int64_t v = 0; v < nc; ++v) {
          double a = 0, bb = 0;
          for (int64_t u = 0; u < nr; ++u) {
            const double c = rc[size_t(u * H + r)], s = rs[size_t(u * H + r)];
            const double xr = xre[size_t(u * nc + v)], xi = xim[size_t(u * nc + v)];
            a += xr * c - xi * s;
            bb += xr * s + xi * c;
          }
          pre[size_t(r * nc + v)] = a;
          pim[size_t(r * nc + v)] = bb;
        }
        const float* row = xp + r * W;
        float* out = yp + r * W;
        for (int64_t i = 0; i < W; ++i) {
          double d = 0;
          for (int64_t v = 0; v < nc; ++v)
            d += pre[size_t(r * nc + v)] * cc[size_t(v * W + i)] - pim[size_t(r * nc + v)] * cs[size_t(v * W + i)];
          out[i] = float(double(row[i]) + d);
        }
      }
    }
  });
}

}  // namespace pia::cpu
