#include <algorithm>
#include <vector>

#include "../core/thread_pool.h"
#include "kernels.h"
#include "simd.h"

namespace pia::cpu {

namespace {

// Calls fn(offset_a, offset_b, row_index) for every row of the last dimension.
template <typename Fn>
void for_each_row(const Shape& shape, const Shape& sa, const Shape& sb, Fn fn) {
  const int64_t nd = int64_t(shape.size());
  const int64_t last = nd ? shape[size_t(nd - 1)] : 1;
  const int64_t rows = last ? shape_numel(shape) / last : 0;
  parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(last, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      int64_t rem = r, oa = 0, ob = 0;
      for (int64_t d = nd - 2; d >= 0; --d) {
        const int64_t i = rem % shape[size_t(d)];
        rem /= shape[size_t(d)];
        oa += i * sa[size_t(d)];
        ob += i * sb[size_t(d)];
      }
      fn(oa, ob, r);
    }
  });
}

}  // namespace

void activation_inplace_serial(float* x, int64_t n, Activation act) {
  switch (act) {
    case Activation::None: return;
    case Activation::SiLU: return silu_inplace(x, n);
    case Activation::GELU: return gelu_inplace(x, n);
    default:
      for (int64_t i = 0; i < n; ++i) x[i] = apply_activation(act, x[i]);
  }
}

void activation_inplace(float* x, int64_t n, Activation act) {
  if (act == Activation::None) return;
  parallel_for(0, n, 16384, [&](int64_t b, int64_t e) { activation_inplace_serial(x + b, e - b, act); });
}

namespace {
// One output row; the stride-1 and broadcast-scalar cases are spelled out so they vectorise.
template <typename F>
void binary_row(F f, float* po, const float* pa, int64_t la, const float* pb, int64_t lb, int64_t n) {
  if (la == 1 && lb == 1) {
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
  } else if (la == 1 && lb == 0) {
    const float b = *pb;
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], b);
  } else if (la == 0 && lb == 1) {
    const float a = *pa;
    for (int64_t i = 0; i < n; ++i) po[i] = f(a, pb[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i * la], pb[i * lb]);
  }
}
}  // namespace

void binary(BinaryOp op, const float* a, const Shape& sa, const float* b, const Shape& sb, float* out,
            const Shape& out_shape) {
  const int64_t nd = int64_t(out_shape.size());
  const int64_t last = nd ? out_shape.back() : 1;
  const int64_t la = nd ? sa.back() : 0, lb = nd ? sb.back() : 0;
  for_each_row(out_shape, sa, sb, [&](int64_t oa, int64_t ob, int64_t r) {
    float* po = out + r * last;
    switch (op) {
      case BinaryOp::Add: return binary_row([](float x, float y) { return x + y; }, po, a + oa, la, b + ob, lb, last);
      case BinaryOp::Sub: return binary_row([](float x, float y) { return x - y; }, po, a + oa, la, b + ob, lb, last);
      case BinaryOp::Mul: return binary_row([](float x, float y) { return x * y; }, po, a + oa, la, b + ob, lb, last);
      case BinaryOp::Div: return binary_row([](float x, float y) { return x / y; }, po, a + oa, la, b + ob, lb, last);
    }
  });
}

void add_inplace(float* a, const Shape& shape, const float* b, const Shape& sb, float alpha) {
  const Shape sa = contiguous_strides(shape);
  const int64_t last = shape.empty() ? 1 : shape.back();
  const int64_t lb = shape.empty() ? 0 : sb.back();
  for_each_row(shape, sa, sb, [&](int64_t oa, int64_t ob, int64_t) {
    float* pa = a + oa;
    const float* pb = b + ob;
    if (lb == 0) {
      const float v = alpha * *pb;
      for (int64_t i = 0; i < last; ++i) pa[i] += v;
    } else if (lb == 1 && alpha == 1.f) {
      for (int64_t i = 0; i < last; ++i) pa[i] += pb[i];
    } else if (lb == 1) {
      for (int64_t i = 0; i < last; ++i) pa[i] += alpha * pb[i];
    } else {
      for (int64_t i = 0; i < last; ++i) pa[i] += alpha * pb[i * lb];
    }
  });
}

}  // namespace pia::cpu
