// The CPU backend: argument checks and dtype handling here, the math in the kernel files.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../core/errors.h"
#include "../core/thread_pool.h"
#include "../ops/backend.h"
#include "host_allocator.h"
#include "kernels.h"
#include "simd.h"

namespace pia {

namespace {

[[noreturn]] void bad(const std::string& op, const std::string& msg) {
  throw_error("E_INVALID_ARGUMENT", op + ": " + msg);
}

// Activations are float32 and contiguous; anything else is converted (weights may be F16/BF16
// when they did not go through upload()).
Tensor f32(const Tensor& t, const char* op, const char* what) {
  if (!t.defined()) bad(op, std::string(what) + " is undefined");
  if (t.device() != Device::CPU) bad(op, std::string(what) + " is not a CPU tensor");
  if (!t.is_contiguous()) {
    Tensor c = cpu::new_tensor(t.shape(), t.dtype());
    if (t.numel()) cpu::strided_copy(t.raw(), t.shape(), t.strides(), c.raw(), dtype_size(t.dtype()));
    return c.to(DType::F32);
  }
  return t.to(DType::F32);
}

// A new contiguous copy of a contiguous tensor.
Tensor copy_of(const Tensor& t) {
  Tensor y = cpu::new_tensor(t.shape(), t.dtype());
  const char* src = static_cast<const char*>(t.raw());
  char* dst = static_cast<char*>(y.raw());
  const int64_t n = int64_t(t.nbytes());
  parallel_for(0, n, 1 << 20, [&](int64_t b, int64_t e) { std::memcpy(dst + b, src + b, size_t(e - b)); });
  return y;
}

const float* opt_ptr(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

Shape broadcast_shape(const Shape& a, const Shape& b, const char* op) {
  const size_t nd = std::max(a.size(), b.size());
  Shape out(nd);
  for (size_t i = 0; i < nd; ++i) {
    const int64_t da = i < nd - a.size() ? 1 : a[i - (nd - a.size())];
    const int64_t db = i < nd - b.size() ? 1 : b[i - (nd - b.size())];
    if (da != db && da != 1 && db != 1) bad(op, "shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// t's strides right-aligned to `out`, 0 on broadcast dims.
Shape broadcast_strides(const Tensor& t, const Shape& out) {
  Shape s(out.size(), 0);
  const size_t off = out.size() - size_t(t.dim());
  for (size_t i = 0; i < size_t(t.dim()); ++i) s[off + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  return s;
}

// A weight operand: f16/bf16 kept as stored (the kernels widen them while packing), made
// contiguous when it is a view.
Tensor weight(const Tensor& t, const char* op) {
  if (!t.defined()) bad(op, "weight is undefined");
  if (t.device() != Device::CPU) bad(op, "weight is not a CPU tensor");
  if (t.is_contiguous()) return t;
  Tensor c = cpu::new_tensor(t.shape(), t.dtype());
  if (t.numel()) cpu::strided_copy(t.raw(), t.shape(), t.strides(), c.raw(), dtype_size(t.dtype()));
  return c;
}

// Strided views are fine for binary(); only the dtype needs to be float32.
Tensor f32_view(const Tensor& t, const char* op, const char* what) {
  if (!t.defined()) bad(op, std::string(what) + " is undefined");
  return t.dtype() == DType::F32 ? t : t.to(DType::F32);
}

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  Device device() const override { return Device::CPU; }

  // Weights stay as stored (a borrowed, mmapped checkpoint is not even copied): f16/bf16 ones are
  // widened to float32 while the GEMM packs them, which halves resident memory for half-precision
  // checkpoints at the cost of a conversion pass per use (under 1% of a UNet forward).
  Tensor upload(const Tensor& host) override {
    if (!host.defined() || host.is_contiguous()) return host;
    return contiguous(host);
  }
  Tensor from_host(const Tensor& host) override { return copy_of(f32(host, "from_host", "x")); }
  Tensor to_host(const Tensor& x) override { return f32(x, "to_host", "x"); }
  Tensor zeros(const Shape& shape) override { return Tensor::zeros(shape); }
  Tensor contiguous(const Tensor& x) override {
    if (!x.defined()) bad("contiguous", "x is undefined");
    Tensor y = cpu::new_tensor(x.shape(), x.dtype());
    if (x.numel()) cpu::strided_copy(x.raw(), x.shape(), x.strides(), y.raw(), dtype_size(x.dtype()));
    return y;
  }

  Tensor cat(const std::vector<Tensor>& xs, int dim) override {
    if (xs.empty()) bad("cat", "no tensors");
    const int64_t nd = xs[0].dim();
    const int64_t d = dim < 0 ? dim + nd : dim;
    if (d < 0 || d >= nd) bad("cat", "dim out of range");
    std::vector<Tensor> in;
    Shape out_shape = xs[0].shape();
    out_shape[size_t(d)] = 0;
    for (const Tensor& x : xs) {
      Tensor c = f32(x, "cat", "input");
      if (c.dim() != nd) bad("cat", "rank mismatch");
      for (int64_t i = 0; i < nd; ++i) {
        if (i != d && c.size(i) != xs[0].size(i)) bad("cat", "shape mismatch " + shape_str(c.shape()));
      }
      out_shape[size_t(d)] += c.size(d);
      in.push_back(c);
    }
    Tensor out = cpu::new_tensor(out_shape);
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < d; ++i) outer *= out_shape[size_t(i)];
    for (int64_t i = d + 1; i < nd; ++i) inner *= out_shape[size_t(i)];
    const int64_t row = out_shape[size_t(d)] * inner;
    parallel_for(0, outer, 1, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        float* dst = out.data<float>() + o * row;
        for (const Tensor& c : in) {
          const int64_t n = c.size(d) * inner;
          std::copy(c.data<float>() + o * n, c.data<float>() + (o + 1) * n, dst);
          dst += n;
        }
      }
    });
    return out;
  }

  Tensor linear(const Tensor& x_, const Tensor& w_, const Tensor& b_, Activation act) override {
    Tensor x = f32(x_, "linear", "x"), w = weight(w_, "linear");
    if (w.dim() != 2 || x.dim() < 1 || x.size(-1) != w.size(1)) {
      bad("linear", "x " + shape_str(x.shape()) + " does not match weight " + shape_str(w.shape()));
    }
    const int64_t in = w.size(1), out = w.size(0), rows = x.numel() / std::max<int64_t>(in, 1);
    Tensor b;
    if (b_.defined()) {
      b = f32(b_, "linear", "bias");
      if (b.numel() != out) bad("linear", "bias " + shape_str(b.shape()) + " for " + std::to_string(out) + " outputs");
    }
    Shape ys = x.shape();
    ys.back() = out;
    Tensor y = cpu::new_tensor(ys);
    cpu::GemmEpilogue ep;
    ep.col_bias = opt_ptr(b);
    ep.act = act;
    cpu::gemm(rows, out, in, cpu::MatrixRef{x.raw(), in}, cpu::MatrixRef{w.raw(), in, w.dtype()}, true, y.data<float>(),
              out, false, ep);
    return y;
  }

  Tensor matmul(const Tensor& a_, const Tensor& b_, bool trans_b) override {
    Tensor a = f32(a_, "matmul", "a"), b = f32(b_, "matmul", "b");
    if (a.dim() < 2 || a.dim() > 3 || b.dim() < 2 || b.dim() > 3) bad("matmul", "operands must be 2-D or 3-D");
    const int64_t Ba = a.dim() == 3 ? a.size(0) : 1, Bb = b.dim() == 3 ? b.size(0) : 1;
    if (Ba != Bb && Ba != 1 && Bb != 1) bad("matmul", "batch sizes differ");
    const int64_t M = a.size(-2), K = a.size(-1);
    const int64_t N = trans_b ? b.size(-2) : b.size(-1), Kb = trans_b ? b.size(-1) : b.size(-2);
    if (K != Kb) bad("matmul", "inner sizes differ: " + shape_str(a.shape()) + " x " + shape_str(b.shape()));
    const int64_t Bt = std::max(Ba, Bb);
    Tensor y = cpu::new_tensor(a.dim() == 3 || b.dim() == 3 ? Shape{Bt, M, N} : Shape{M, N});
    for (int64_t i = 0; i < Bt; ++i) {
      cpu::gemm(M, N, K, a.data<float>() + (Ba == 1 ? 0 : i) * M * K, K, b.data<float>() + (Bb == 1 ? 0 : i) * K * N,
                trans_b ? K : N, trans_b, y.data<float>() + i * M * N, N, false);
    }
    return y;
  }

  Tensor conv2d(const Tensor& x_, const Tensor& w_, const Tensor& b_, const Conv2dParams& p) override {
    Tensor x = f32(x_, "conv2d", "x"), w = weight(w_, "conv2d");
    if (x.dim() != 4 || w.dim() != 4 || x.size(1) != w.size(1)) {
      bad("conv2d", "x " + shape_str(x.shape()) + " does not match weight " + shape_str(w.shape()));
    }
    if (p.stride < 1 || p.pad_top < 0 || p.pad_bottom < 0 || p.pad_left < 0 || p.pad_right < 0) {
      bad("conv2d", "bad stride/padding");
    }
    Tensor b;
    if (b_.defined()) {
      b = f32(b_, "conv2d", "bias");
      if (b.numel() != w.size(0)) bad("conv2d", "bias size mismatch");
    }
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    const int64_t Co = w.size(0), kh = w.size(2), kw = w.size(3);
    const int64_t Ho = (H + p.pad_top + p.pad_bottom - kh) / p.stride + 1;
    const int64_t Wo = (W + p.pad_left + p.pad_right - kw) / p.stride + 1;
    if (Ho <= 0 || Wo <= 0) bad("conv2d", "kernel larger than padded input");
    Tensor y = cpu::new_tensor({N, Co, Ho, Wo});
    cpu::conv2d(x.data<float>(), N, C, H, W, w.raw(), w.dtype(), Co, kh, kw, opt_ptr(b), p, y.data<float>(), Ho, Wo);
    return y;
  }

  Tensor group_norm(const Tensor& x_, int groups, const Tensor& g_, const Tensor& b_, float eps,
                    Activation act) override {
    Tensor x = f32(x_, "group_norm", "x");
    if (x.dim() < 2 || groups <= 0 || x.size(1) % groups != 0) {
      bad("group_norm", "x " + shape_str(x.shape()) + " with " + std::to_string(groups) + " groups");
    }
    const int64_t C = x.size(1);
    Tensor g, b;
    if (g_.defined()) g = f32(g_, "group_norm", "weight");
    if (b_.defined()) b = f32(b_, "group_norm", "bias");
    if ((g.defined() && g.numel() != C) || (b.defined() && b.numel() != C)) bad("group_norm", "affine size mismatch");
    Tensor y = cpu::new_tensor(x.shape());
    cpu::group_norm(x.data<float>(), x.size(0), C, x.numel() / std::max<int64_t>(1, x.size(0) * C), groups,
                    opt_ptr(g), opt_ptr(b), eps, act, y.data<float>());
    return y;
  }

  Tensor group_norm_frames(const Tensor& x_, int64_t frames, int groups, const Tensor& g_, const Tensor& b_,
                           float eps) override {
    Tensor x = f32(x_, "group_norm_frames", "x");
    if (x.dim() < 2 || groups <= 0 || x.size(1) % groups != 0 || frames <= 0 || x.size(0) % frames != 0) {
      bad("group_norm_frames", "x " + shape_str(x.shape()) + " with " + std::to_string(groups) + " groups, " +
                                   std::to_string(frames) + " frames");
    }
    const int64_t C = x.size(1);
    Tensor g, b;
    if (g_.defined()) g = f32(g_, "group_norm_frames", "weight");
    if (b_.defined()) b = f32(b_, "group_norm_frames", "bias");
    if ((g.defined() && g.numel() != C) || (b.defined() && b.numel() != C)) {
      bad("group_norm_frames", "affine size mismatch");
    }
    Tensor y = cpu::new_tensor(x.shape());
    cpu::group_norm(x.data<float>(), x.size(0) / frames, C, x.numel() / std::max<int64_t>(1, x.size(0) * C), groups,
                    opt_ptr(g), opt_ptr(b), eps, Activation::None, y.data<float>(), frames);
    return y;
  }

  Tensor layer_norm(const Tensor& x_, const Tensor& g_, const Tensor& b_, float eps) override {
    Tensor x = f32(x_, "layer_norm", "x");
    if (x.dim() < 1) bad("layer_norm", "scalar input");
    const int64_t D = x.size(-1);
    Tensor g, b;
    if (g_.defined()) g = f32(g_, "layer_norm", "weight");
    if (b_.defined()) b = f32(b_, "layer_norm", "bias");
    if ((g.defined() && g.numel() != D) || (b.defined() && b.numel() != D)) bad("layer_norm", "affine size mismatch");
    Tensor y = cpu::new_tensor(x.shape());
    cpu::layer_norm(x.data<float>(), x.numel() / std::max<int64_t>(D, 1), D, opt_ptr(g), opt_ptr(b), eps,
                    y.data<float>());
    return y;
  }

  Tensor layer_norm_add(const Tensor& x_, const Tensor& g_, const Tensor& b_, float eps, const Tensor& add_,
                        int64_t add_div) override {
    Tensor x = f32(x_, "layer_norm_add", "x"), add = f32(add_, "layer_norm_add", "add");
    if (x.dim() < 1) bad("layer_norm_add", "scalar input");
    const int64_t D = x.size(-1), R = x.numel() / std::max<int64_t>(D, 1);
    if (add.dim() != 2 || add.size(1) != D || add.size(0) < 1 || add_div < 1 || R % (add.size(0) * add_div)) {
      bad("layer_norm_add", "add " + shape_str(add.shape()) + " (every " + std::to_string(add_div) +
                                " rows) does not tile x " + shape_str(x.shape()));
    }
    Tensor g, b;
    if (g_.defined()) g = f32(g_, "layer_norm_add", "weight");
    if (b_.defined()) b = f32(b_, "layer_norm_add", "bias");
    if ((g.defined() && g.numel() != D) || (b.defined() && b.numel() != D)) bad("layer_norm_add", "affine size mismatch");
    Tensor y = cpu::new_tensor(x.shape());
    cpu::layer_norm(x.data<float>(), R, D, opt_ptr(g), opt_ptr(b), eps, y.data<float>(), add.data<float>(), add_div,
                    add.size(0));
    return y;
  }

  Tensor attention(const Tensor& q_, const Tensor& k_, const Tensor& v_, const AttentionParams& p) override {
    Tensor q = f32(q_, "attention", "q"), k = f32(k_, "attention", "k"), v = f32(v_, "attention", "v");
    if (q.dim() != 3 || k.dim() != 3 || v.dim() != 3 || p.heads <= 0) bad("attention", "q, k, v must be [B, S, H*D]");
    const int64_t B = q.size(0), Sq = q.size(1), Sk = k.size(1), H = p.heads;
    if (k.size(0) != B || v.size(0) != B || v.size(1) != Sk || q.size(2) % H || v.size(2) % H ||
        k.size(2) != q.size(2) || Sk == 0) {
      bad("attention", "q " + shape_str(q.shape()) + ", k " + shape_str(k.shape()) + ", v " + shape_str(v.shape()) +
                           " with " + std::to_string(H) + " heads");
    }
    const int64_t D = q.size(2) / H, Dv = v.size(2) / H;
    Tensor o = cpu::new_tensor({B, Sq, H * Dv});
    cpu::attention(q.data<float>(), k.data<float>(), v.data<float>(), o.data<float>(), B, Sq, Sk, H, D, Dv, p.scale,
                   p.causal);
    return o;
  }

  // The frames of each pixel are a sequence; the kernel reads them in place from the frame-major
  // [B·F, HW, C] layout instead of permuting q, k, v and the output (four full copies).
  Tensor temporal_attention(const Tensor& q_, const Tensor& k_, const Tensor& v_, int64_t frames,
                            const AttentionParams& p) override {
    Tensor q = f32(q_, "temporal_attention", "q"), k = f32(k_, "temporal_attention", "k"),
           v = f32(v_, "temporal_attention", "v");
    if (q.dim() != 3 || k.dim() != 3 || v.dim() != 3 || p.heads <= 0 || frames <= 0 || p.causal) {
      bad("temporal_attention", "q, k, v must be [B·F, HW, H*D], not causal");
    }
    const int64_t BF = q.size(0), HW = q.size(1), H = p.heads;
    if (BF % frames || k.size(0) != BF || v.size(0) != BF || k.size(1) != HW || v.size(1) != HW || q.size(2) % H ||
        v.size(2) % H || k.size(2) != q.size(2)) {
      bad("temporal_attention", "q " + shape_str(q.shape()) + ", k " + shape_str(k.shape()) + ", v " +
                                    shape_str(v.shape()) + " with " + std::to_string(frames) + " frames, " +
                                    std::to_string(H) + " heads");
    }
    const int64_t D = q.size(2) / H, Dv = v.size(2) / H;
    Tensor o = cpu::new_tensor({BF, HW, H * Dv});
    cpu::attention(q.data<float>(), k.data<float>(), v.data<float>(), o.data<float>(), (BF / frames) * HW, frames,
                   frames, H, D, Dv, p.scale, false, HW);
    return o;
  }

  Tensor binary(BinaryOp op, const Tensor& a_, const Tensor& b_) override {
    Tensor a = f32_view(a_, "binary", "a"), b = f32_view(b_, "binary", "b");
    const Shape out = broadcast_shape(a.shape(), b.shape(), "binary");
    Tensor y = cpu::new_tensor(out);
    cpu::binary(op, a.data<float>(), broadcast_strides(a, out), b.data<float>(), broadcast_strides(b, out),
                y.data<float>(), out);
    return y;
  }

  void add_(Tensor& a, const Tensor& b_, float alpha) override {
    if (!a.defined() || a.dtype() != DType::F32 || !a.is_contiguous()) bad("add_", "a must be contiguous float32");
    Tensor b = f32_view(b_, "add_", "b");
    if (broadcast_shape(a.shape(), b.shape(), "add_") != a.shape()) {
      bad("add_", shape_str(b.shape()) + " does not broadcast to " + shape_str(a.shape()));
    }
    cpu::add_inplace(a.data<float>(), a.shape(), b.data<float>(), broadcast_strides(b, a.shape()), alpha);
  }

  Tensor affine(const Tensor& x_, float s, float t) override {
    Tensor x = f32(x_, "affine", "x");
    Tensor y = cpu::new_tensor(x.shape());
    const float* xp = x.data<float>();
    float* yp = y.data<float>();
    parallel_for(0, x.numel(), 16384, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) yp[i] = xp[i] * s + t;
    });
    return y;
  }

  Tensor activation(const Tensor& x_, Activation act) override {
    Tensor y = copy_of(f32(x_, "activation", "x"));
    cpu::activation_inplace(y.data<float>(), y.numel(), act);
    return y;
  }

  Tensor geglu(const Tensor& x_) override {
    Tensor x = f32(x_, "geglu", "x");
    if (x.dim() < 1 || x.size(-1) % 2) bad("geglu", "last dim must be even, got " + shape_str(x.shape()));
    const int64_t n = x.size(-1) / 2, rows = x.numel() / std::max<int64_t>(1, 2 * n);
    Shape ys = x.shape();
    ys.back() = n;
    Tensor y = cpu::new_tensor(ys);
    const float* xp = x.data<float>();
    float* yp = y.data<float>();
    parallel_for(0, rows, 16, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const float* xr = xp + r * 2 * n;
        cpu::geglu_row(xr, xr + n, yp + r * n, n);
      }
    });
    return y;
  }

  Tensor upsample_nearest2x(const Tensor& x_) override {
    Tensor x = f32(x_, "upsample_nearest2x", "x");
    if (x.dim() != 4) bad("upsample_nearest2x", "x must be NCHW");
    const int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
    Tensor y = cpu::new_tensor({x.size(0), x.size(1), 2 * H, 2 * W});
    const float* xp = x.data<float>();
    float* yp = y.data<float>();
    parallel_for(0, P * H, 16, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const float* src = xp + r * W;
        float* d0 = yp + r * 4 * W;
        for (int64_t i = 0; i < W; ++i) d0[2 * i] = d0[2 * i + 1] = src[i];
        std::copy(d0, d0 + 2 * W, d0 + 2 * W);
      }
    });
    return y;
  }

  Tensor embedding(const Tensor& table_, const std::vector<int64_t>& ids) override {
    Tensor table = weight(table_, "embedding");
    if (table.dim() != 2) bad("embedding", "table must be [V, D]");
    const int64_t V = table.size(0), D = table.size(1);
    Tensor y = cpu::new_tensor({int64_t(ids.size()), D});
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= V) bad("embedding", "id " + std::to_string(ids[i]) + " out of range [0, " + std::to_string(V) + ")");
      // only the rows asked for are widened (CLIP's table is 49408 × 768)
      cpu::widen(table.raw(), table.dtype(), ids[i] * D, D, y.data<float>() + int64_t(i) * D);
    }
    return y;
  }

  // diffusers get_timestep_embedding (max_period=10000, scale=1) in torch's float32 order of operations.
  Tensor timestep_embedding(const std::vector<float>& t, int dim, bool flip_sin_to_cos,
                            float downscale_freq_shift) override {
    if (dim <= 0) bad("timestep_embedding", "dim must be positive");
    const int half = dim / 2;
    Tensor y = Tensor::zeros({int64_t(t.size()), dim});
    const float neg_log_period = float(-std::log(10000.0));
    const float denom = float(half) - downscale_freq_shift;
    std::vector<float> freq(static_cast<size_t>(half));
    for (int i = 0; i < half; ++i) freq[size_t(i)] = std::exp(neg_log_period * float(i) / denom);
    for (size_t r = 0; r < t.size(); ++r) {
      float* yr = y.data<float>() + int64_t(r) * dim;
      for (int i = 0; i < half; ++i) {
        const float a = t[r] * freq[size_t(i)];
        const float s = std::sin(a), c = std::cos(a);
        yr[i] = flip_sin_to_cos ? c : s;
        yr[half + i] = flip_sin_to_cos ? s : c;
      }
    }
    return y;
  }

  Tensor fourier_filter(const Tensor& x_, int threshold, float scale) override {
    Tensor x = f32(x_, "fourier_filter", "x");
    if (x.dim() != 4) bad("fourier_filter", "x must be [N, C, H, W]");
    Tensor y = cpu::new_tensor(x.shape());
    cpu::fourier_filter(x.data<float>(), x.size(0) * x.size(1), x.size(2), x.size(3), threshold, scale,
                        y.data<float>());
    return y;
  }
};

}  // namespace

std::shared_ptr<Backend> make_cpu_backend() { return std::make_shared<CpuBackend>(); }

}  // namespace pia
