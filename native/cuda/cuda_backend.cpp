// CudaBackend: argument checks, shapes and dtypes here (as the CPU backend does them), every byte of
// math in libpia_cuda.so through the op table. Compiled into the core; it needs no CUDA headers.
#include "cuda_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "../core/errors.h"
#include "cuda_loader.h"

namespace pia {

namespace {

[[noreturn]] void bad(const std::string& op, const std::string& msg) {
  throw_error("E_INVALID_ARGUMENT", op + ": " + msg);
}

// Same rules as the CPU backend's broadcasting (numpy: right-aligned, size-1 dims stretch).
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

Shape broadcast_strides(const Tensor& t, const Shape& out) {
  Shape s(out.size(), 0);
  const size_t off = out.size() - size_t(t.dim());
  for (size_t i = 0; i < size_t(t.dim()); ++i) s[off + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  return s;
}

PiaStridedShape strided_shape(const Shape& s, const char* op) {
  if (s.size() > PIA_CUDA_MAX_DIMS) bad(op, "more than " + std::to_string(PIA_CUDA_MAX_DIMS) + " dims");
  PiaStridedShape r{};
  r.ndim = int(s.size());
  for (size_t i = 0; i < s.size(); ++i) r.shape[i] = s[i];
  return r;
}

int dtype_code(DType t) { return int(t); }

// Python slice a[start:stop] bounds (a negative start wraps, as in diffusers' fourier_filter).
void py_slice(int64_t start, int64_t stop, int64_t n, int64_t& b, int64_t& e) {
  if (start < 0) start = std::max<int64_t>(0, start + n);
  if (stop < 0) stop = std::max<int64_t>(0, stop + n);
  b = std::min(start, n);
  e = std::max(b, std::min(stop, n));
}

// Unshifted frequencies of the fftshifted index range [b, e).
std::vector<int64_t> unshift(int64_t b, int64_t e, int64_t n) {
  std::vector<int64_t> f;
  for (int64_t r = b; r < e; ++r) f.push_back(((r - n / 2) % n + n) % n);
  return f;
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, DType dtype, const PiaCudaOps* ops) : dev_(device), dt_(dtype), ops_(ops) {}

  std::string name() const override { return std::string("cuda:") + std::to_string(dev_) + " (" + dtype_name(dt_) + ")"; }
  Device device() const override { return Device::CUDA; }

  // --- memory -------------------------------------------------------------------------------------
  Tensor upload(const Tensor& host) override {
    if (!host.defined()) return host;
    if (host.device() == Device::CUDA) return to_device(host, "upload");
    Tensor y = to_device(host, "upload");
    // Remembered for set_weights_resident; weak, so a weight dropped with its model is not kept.
    std::lock_guard<std::mutex> lock(weights_mu_);
    weights_.push_back(y.storage());
    return y;
  }
  Tensor from_host(const Tensor& host) override {
    if (!host.defined()) bad("from_host", "x is undefined");
    return to_device(host, "from_host");
  }
  Tensor to_host(const Tensor& x) override {
    if (!x.defined()) bad("to_host", "x is undefined");
    if (x.device() == Device::CPU) return x.to(DType::F32).contiguous();
    const Tensor c = x.is_contiguous() ? x : contiguous(x);
    Tensor h = Tensor::empty(c.shape(), c.dtype());
    ok(ops_->memcpy_d2h(dev_, h.raw(), c.raw(), c.nbytes()), "to_host");
    return h.to(DType::F32);
  }
  Tensor zeros(const Shape& shape) override {
    Tensor y = alloc(shape, dt_);
    ok(ops_->memset_zero(dev_, y.raw(), y.nbytes()), "zeros");
    return y;
  }
  Tensor contiguous(const Tensor& x) override {
    if (!x.defined()) bad("contiguous", "x is undefined");
    if (x.device() != Device::CUDA) bad("contiguous", "x is not a CUDA tensor");
    Tensor y = alloc(x.shape(), x.dtype());
    const PiaStridedShape s = strided_shape(x.shape(), "contiguous");
    ok(ops_->strided_copy(dev_, dtype_size(x.dtype()), &s, x.raw(), x.strides().data(), y.raw(), y.strides().data()),
       "contiguous");
    return y;
  }
  Tensor cat(const std::vector<Tensor>& xs, int dim) override {
    if (xs.empty()) bad("cat", "no tensors");
    const int64_t nd = xs[0].dim();
    const int64_t d = dim < 0 ? dim + nd : dim;
    if (d < 0 || d >= nd) bad("cat", "dim out of range");
    Shape out_shape = xs[0].shape();
    out_shape[size_t(d)] = 0;
    std::vector<Tensor> in;
    for (const Tensor& x : xs) {
      // Strided views are copied as they are; only another dtype is converted first.
      Tensor c = on_device(x, "cat", "input");
      if (c.dtype() != dt_) c = arg(x, "cat", "input");
      if (c.dim() != nd) bad("cat", "rank mismatch");
      for (int64_t i = 0; i < nd; ++i) {
        if (i != d && c.size(i) != xs[0].size(i)) bad("cat", "shape mismatch " + shape_str(c.shape()));
      }
      out_shape[size_t(d)] += c.size(d);
      in.push_back(c);
    }
    Tensor out = alloc(out_shape, dt_);
    int64_t at = 0;
    for (const Tensor& c : in) {
      if (c.numel()) {
        char* dst = static_cast<char*>(out.raw()) + size_t(at * out.stride(d)) * dtype_size(dt_);
        const PiaStridedShape s = strided_shape(c.shape(), "cat");
        ok(ops_->strided_copy(dev_, dtype_size(dt_), &s, c.raw(), c.strides().data(), dst, out.strides().data()),
           "cat");
      }
      at += c.size(d);
    }
    return out;
  }

  void set_weights_resident(bool on_device) override {
    std::lock_guard<std::mutex> lock(weights_mu_);
    for (auto it = weights_.begin(); it != weights_.end();) {
      std::shared_ptr<Storage> s = it->lock();
      if (!s) {
        it = weights_.erase(it);
        continue;
      }
      if (s->bytes() && on_device && s->device() == Device::CPU) move_to_device(*s);
      if (s->bytes() && !on_device && s->device() == Device::CUDA) move_to_host(*s);
      ++it;
    }
    // The freed blocks go back to the driver, so that the next network has the memory.
    if (!on_device) ok(ops_->empty_cache(dev_), "empty_cache");
  }

  // --- linear algebra -----------------------------------------------------------------------------
  Tensor linear(const Tensor& x_, const Tensor& w_, const Tensor& b_, Activation act) override {
    Tensor x = arg(x_, "linear", "x"), w = arg(w_, "linear", "weight");
    if (w.dim() != 2 || x.dim() < 1 || x.size(-1) != w.size(1)) {
      bad("linear", "x " + shape_str(x.shape()) + " does not match weight " + shape_str(w.shape()));
    }
    const int64_t in = w.size(1), out = w.size(0), rows = x.numel() / std::max<int64_t>(in, 1);
    Tensor b = opt_arg(b_, "linear", "bias");
    if (b.defined() && b.numel() != out) bad("linear", "bias " + shape_str(b.shape()) + " for " + std::to_string(out) + " outputs");
    Shape ys = x.shape();
    ys.back() = out;
    Tensor y = alloc(ys, dt_);
    PiaGemmArgs g{};
    g.dtype = dtype_code(dt_);
    g.M = rows;
    g.N = out;
    g.K = in;
    g.batch = 1;
    g.A = x.raw();
    g.lda = in;
    g.B = w.raw();
    g.ldb = in;
    g.trans_b = 1;
    g.C = y.raw();
    g.ldc = out;
    g.bias = b.defined() ? b.raw() : nullptr;
    g.act = int(act);
    ok(ops_->gemm(dev_, &g), "linear");
    return y;
  }

  Tensor matmul(const Tensor& a_, const Tensor& b_, bool trans_b) override {
    Tensor a = arg(a_, "matmul", "a"), b = arg(b_, "matmul", "b");
    if (a.dim() < 2 || a.dim() > 3 || b.dim() < 2 || b.dim() > 3) bad("matmul", "operands must be 2-D or 3-D");
    const int64_t Ba = a.dim() == 3 ? a.size(0) : 1, Bb = b.dim() == 3 ? b.size(0) : 1;
    if (Ba != Bb && Ba != 1 && Bb != 1) bad("matmul", "batch sizes differ");
    const int64_t M = a.size(-2), K = a.size(-1);
    const int64_t N = trans_b ? b.size(-2) : b.size(-1), Kb = trans_b ? b.size(-1) : b.size(-2);
    if (K != Kb) bad("matmul", "inner sizes differ: " + shape_str(a.shape()) + " x " + shape_str(b.shape()));
    const int64_t Bt = std::max(Ba, Bb);
    Tensor y = alloc(a.dim() == 3 || b.dim() == 3 ? Shape{Bt, M, N} : Shape{M, N}, dt_);
    const size_t es = dtype_size(dt_);
    constexpr int64_t kMaxBatch = 65535;  // grid.z
    for (int64_t i0 = 0; i0 < Bt; i0 += kMaxBatch) {
      PiaGemmArgs g{};
      g.dtype = dtype_code(dt_);
      g.M = M;
      g.N = N;
      g.K = K;
      g.batch = std::min(kMaxBatch, Bt - i0);
      g.A = static_cast<const char*>(a.raw()) + size_t((Ba == 1 ? 0 : i0) * M * K) * es;
      g.lda = K;
      g.stride_a = Ba == 1 ? 0 : M * K;
      g.B = static_cast<const char*>(b.raw()) + size_t((Bb == 1 ? 0 : i0) * K * N) * es;
      g.ldb = trans_b ? K : N;
      g.stride_b = Bb == 1 ? 0 : K * N;
      g.trans_b = trans_b ? 1 : 0;
      g.C = static_cast<char*>(y.raw()) + size_t(i0 * M * N) * es;
      g.ldc = N;
      g.stride_c = M * N;
      ok(ops_->gemm(dev_, &g), "matmul");
    }
    return y;
  }

  Tensor conv2d(const Tensor& x_, const Tensor& w_, const Tensor& b_, const Conv2dParams& p) override {
    Tensor x = arg(x_, "conv2d", "x"), w = arg(w_, "conv2d", "weight");
    if (x.dim() != 4 || w.dim() != 4 || x.size(1) != w.size(1)) {
      bad("conv2d", "x " + shape_str(x.shape()) + " does not match weight " + shape_str(w.shape()));
    }
    if (p.stride < 1 || p.pad_top < 0 || p.pad_bottom < 0 || p.pad_left < 0 || p.pad_right < 0) {
      bad("conv2d", "bad stride/padding");
    }
    Tensor b = opt_arg(b_, "conv2d", "bias");
    if (b.defined() && b.numel() != w.size(0)) bad("conv2d", "bias size mismatch");
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    const int64_t Co = w.size(0), kh = w.size(2), kw = w.size(3);
    const int64_t Ho = (H + p.pad_top + p.pad_bottom - kh) / p.stride + 1;
    const int64_t Wo = (W + p.pad_left + p.pad_right - kw) / p.stride + 1;
    if (Ho <= 0 || Wo <= 0) bad("conv2d", "kernel larger than padded input");
    Tensor y = alloc({N, Co, Ho, Wo}, dt_);
    PiaConv2dArgs c{};
    c.dtype = dtype_code(dt_);
    c.x = x.raw();
    c.N = N;
    c.C = C;
    c.H = H;
    c.W = W;
    c.w = w.raw();
    c.Co = Co;
    c.kh = kh;
    c.kw = kw;
    c.bias = b.defined() ? b.raw() : nullptr;
    c.stride = p.stride;
    c.pad_top = p.pad_top;
    c.pad_left = p.pad_left;
    c.y = y.raw();
    c.Ho = Ho;
    c.Wo = Wo;
    c.act = 0;
    ok(ops_->conv2d(dev_, &c), "conv2d");
    return y;
  }

  // --- normalisation ------------------------------------------------------------------------------
  Tensor group_norm(const Tensor& x, int groups, const Tensor& g, const Tensor& b, float eps,
                    Activation act) override {
    return run_group_norm("group_norm", x, 1, groups, g, b, eps, act);
  }
  Tensor group_norm_frames(const Tensor& x, int64_t frames, int groups, const Tensor& g, const Tensor& b,
                           float eps) override {
    return run_group_norm("group_norm_frames", x, frames, groups, g, b, eps, Activation::None);
  }

  Tensor layer_norm(const Tensor& x, const Tensor& g, const Tensor& b, float eps) override {
    return run_layer_norm("layer_norm", x, g, b, eps, Tensor(), 1);
  }
  Tensor layer_norm_add(const Tensor& x, const Tensor& g, const Tensor& b, float eps, const Tensor& add,
                        int64_t add_div) override {
    if (!add.defined()) bad("layer_norm_add", "add is undefined");
    return run_layer_norm("layer_norm_add", x, g, b, eps, add, add_div);
  }

  // --- attention ----------------------------------------------------------------------------------
  Tensor attention(const Tensor& q_, const Tensor& k_, const Tensor& v_, const AttentionParams& p) override {
    Tensor q = arg(q_, "attention", "q"), k = arg(k_, "attention", "k"), v = arg(v_, "attention", "v");
    if (q.dim() != 3 || k.dim() != 3 || v.dim() != 3 || p.heads <= 0) bad("attention", "q, k, v must be [B, S, H*D]");
    const int64_t B = q.size(0), Sq = q.size(1), Sk = k.size(1), H = p.heads;
    if (k.size(0) != B || v.size(0) != B || v.size(1) != Sk || q.size(2) % H || v.size(2) % H ||
        k.size(2) != q.size(2) || Sk == 0) {
      bad("attention", "q " + shape_str(q.shape()) + ", k " + shape_str(k.shape()) + ", v " + shape_str(v.shape()) +
                           " with " + std::to_string(H) + " heads");
    }
    const int64_t C = q.size(2), Cv = v.size(2);
    Tensor o = alloc({B, Sq, Cv}, dt_);
    PiaAttentionArgs a{};
    a.sq = {Sq * C, 0, C};
    a.sk = {Sk * C, 0, C};
    a.sv = {Sk * Cv, 0, Cv};
    a.so = {Sq * Cv, 0, Cv};
    a.batch = B;
    a.batch_inner = 1;
    run_attention(a, q, k, v, o, Sq, Sk, H, C / H, Cv / H, p);
    return o;
  }

  Tensor temporal_attention(const Tensor& q_, const Tensor& k_, const Tensor& v_, int64_t frames,
                            const AttentionParams& p) override {
    Tensor q = arg(q_, "temporal_attention", "q"), k = arg(k_, "temporal_attention", "k"),
           v = arg(v_, "temporal_attention", "v");
    if (q.dim() != 3 || k.dim() != 3 || v.dim() != 3 || p.heads <= 0 || frames <= 0) {
      bad("temporal_attention", "q, k, v must be [B·F, HW, H*D]");
    }
    const int64_t BF = q.size(0), HW = q.size(1), H = p.heads, C = q.size(2), Cv = v.size(2);
    if (BF % frames || k.size(0) != BF || v.size(0) != BF || k.size(1) != HW || v.size(1) != HW || k.size(2) != C ||
        C % H || Cv % H) {
      bad("temporal_attention", "q " + shape_str(q.shape()) + ", k " + shape_str(k.shape()) + ", v " +
                                    shape_str(v.shape()) + " with " + std::to_string(frames) + " frames, " +
                                    std::to_string(H) + " heads");
    }
    const int64_t F = frames, B = BF / F;
    Tensor o = alloc({BF, HW, Cv}, dt_);
    PiaAttentionArgs a{};
    // Sequence = the F frames of pixel (b, p): row (b·F + f)·HW + p.
    a.sq = {F * HW * C, C, HW * C};
    a.sk = {F * HW * C, C, HW * C};
    a.sv = {F * HW * Cv, Cv, HW * Cv};
    a.so = {F * HW * Cv, Cv, HW * Cv};
    a.batch = B * HW;
    a.batch_inner = HW;
    run_attention(a, q, k, v, o, F, F, H, C / H, Cv / H, p);
    return o;
  }

  // --- elementwise --------------------------------------------------------------------------------
  Tensor binary(BinaryOp op, const Tensor& a_, const Tensor& b_) override {
    Tensor a = view_arg(a_, "binary", "a"), b = view_arg(b_, "binary", "b");
    const Shape out = broadcast_shape(a.shape(), b.shape(), "binary");
    Tensor y = alloc(out, dt_);
    const PiaStridedShape s = strided_shape(out, "binary");
    const Shape sa = broadcast_strides(a, out), sb = broadcast_strides(b, out);
    ok(ops_->binary(dev_, dtype_code(dt_), int(op), &s, a.raw(), sa.data(), b.raw(), sb.data(), y.raw()), "binary");
    return y;
  }

  void add_(Tensor& a, const Tensor& b_, float alpha) override {
    if (!a.defined() || a.device() != Device::CUDA || a.dtype() != dt_ || !a.is_contiguous()) {
      bad("add_", std::string("a must be a contiguous ") + dtype_name(dt_) + " CUDA tensor");
    }
    Tensor b = view_arg(b_, "add_", "b");
    if (broadcast_shape(a.shape(), b.shape(), "add_") != a.shape()) {
      bad("add_", shape_str(b.shape()) + " does not broadcast to " + shape_str(a.shape()));
    }
    const PiaStridedShape s = strided_shape(a.shape(), "add_");
    const Shape sb = broadcast_strides(b, a.shape());
    ok(ops_->add_inplace(dev_, dtype_code(dt_), &s, a.raw(), b.raw(), sb.data(), alpha), "add_");
  }

  Tensor affine(const Tensor& x_, float s, float t) override {
    Tensor x = arg(x_, "affine", "x");
    Tensor y = alloc(x.shape(), dt_);
    ok(ops_->affine(dev_, dtype_code(dt_), x.raw(), y.raw(), x.numel(), s, t), "affine");
    return y;
  }

  Tensor activation(const Tensor& x_, Activation act) override {
    Tensor x = arg(x_, "activation", "x");
    Tensor y = alloc(x.shape(), dt_);
    ok(ops_->activation(dev_, dtype_code(dt_), x.raw(), y.raw(), x.numel(), int(act)), "activation");
    return y;
  }

  Tensor geglu(const Tensor& x_) override {
    Tensor x = arg(x_, "geglu", "x");
    if (x.dim() < 1 || x.size(-1) % 2) bad("geglu", "last dim must be even, got " + shape_str(x.shape()));
    const int64_t n = x.size(-1) / 2, rows = x.numel() / std::max<int64_t>(1, 2 * n);
    Shape ys = x.shape();
    ys.back() = n;
    Tensor y = alloc(ys, dt_);
    ok(ops_->geglu(dev_, dtype_code(dt_), x.raw(), y.raw(), rows, n), "geglu");
    return y;
  }

  // --- resampling and misc ------------------------------------------------------------------------
  Tensor upsample_nearest2x(const Tensor& x_) override {
    Tensor x = arg(x_, "upsample_nearest2x", "x");
    if (x.dim() != 4) bad("upsample_nearest2x", "x must be NCHW");
    Tensor y = alloc({x.size(0), x.size(1), 2 * x.size(2), 2 * x.size(3)}, dt_);
    ok(ops_->upsample_nearest2x(dev_, dtype_code(dt_), x.raw(), y.raw(), x.size(0) * x.size(1), x.size(2), x.size(3)),
       "upsample_nearest2x");
    return y;
  }

  Tensor embedding(const Tensor& table_, const std::vector<int64_t>& ids) override {
    Tensor table = arg(table_, "embedding", "table");
    if (table.dim() != 2) bad("embedding", "table must be [V, D]");
    const int64_t V = table.size(0), D = table.size(1);
    for (int64_t id : ids) {
      if (id < 0 || id >= V) bad("embedding", "id " + std::to_string(id) + " out of range [0, " + std::to_string(V) + ")");
    }
    Tensor y = alloc({int64_t(ids.size()), D}, dt_);
    ok(ops_->embedding(dev_, dtype_code(dt_), table.raw(), V, D, ids.data(), int64_t(ids.size()), y.raw()), "embedding");
    return y;
  }

  // A few hundred values per UNet call: the CPU reference computes them and they are copied over.
  Tensor timestep_embedding(const std::vector<float>& t, int dim, bool flip_sin_to_cos,
                            float downscale_freq_shift) override {
    return from_host(cpu()->timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift));
  }

  Tensor fourier_filter(const Tensor& x_, int threshold, float scale) override {
    Tensor x = arg(x_, "fourier_filter", "x");
    if (x.dim() != 4) bad("fourier_filter", "x must be [N, C, H, W]");
    const int64_t H = x.size(2), W = x.size(3);
    int64_t rb, re, cb, ce;
    py_slice(H / 2 - threshold, H / 2 + threshold, H, rb, re);
    py_slice(W / 2 - threshold, W / 2 + threshold, W, cb, ce);
    const std::vector<int64_t> R = unshift(rb, re, H), C = unshift(cb, ce, W);
    if (R.size() > PIA_CUDA_MAX_FREQS || C.size() > PIA_CUDA_MAX_FREQS) {
      throw_error("E_UNSUPPORTED", "fourier_filter: threshold " + std::to_string(threshold) + " is too large for CUDA");
    }
    // torch multiplies the complex64 spectrum by a float32 mask holding `scale`
    const double gain = double(float(scale)) - 1.0;
    Tensor y = alloc(x.shape(), dt_);
    ok(ops_->fourier_filter(dev_, dtype_code(dt_), x.raw(), y.raw(), x.size(0) * x.size(1), H, W, R.data(), int(R.size()),
                            C.data(), int(C.size()), gain),
       "fourier_filter");
    return y;
  }

 private:
  int dev_;
  DType dt_;
  const PiaCudaOps* ops_;

  std::mutex weights_mu_;
  std::vector<std::weak_ptr<Storage>> weights_;  // what upload() put on the device

  Storage::Deleter device_deleter() const {
    const PiaCudaOps* ops = ops_;
    const int dev = dev_;
    return [ops, dev](void* q) {
      if (q) ops->free(dev, q);
    };
  }

  void move_to_host(Storage& s) {
    void* h = std::aligned_alloc(64, (s.bytes() + 63) / 64 * 64);
    if (!h) throw_error("E_OUT_OF_MEMORY", "offload: could not allocate " + std::to_string(s.bytes()) + " bytes of host memory");
    const int rc = ops_->memcpy_d2h(dev_, h, s.data(), s.bytes());
    if (rc != PIA_CUDA_OK) std::free(h);
    ok(rc, "offload");
    s.rehome(h, Device::CPU, [](void* p) { std::free(p); });
  }

  void move_to_device(Storage& s) {
    void* d = nullptr;
    ok(ops_->malloc(dev_, s.bytes(), &d), "reload");
    // From pageable memory the copy returns once the bytes are staged, so the host block may go.
    const int rc = ops_->memcpy_h2d(dev_, d, s.data(), s.bytes());
    if (rc != PIA_CUDA_OK) ops_->free(dev_, d);
    ok(rc, "reload");
    s.rehome(d, Device::CUDA, device_deleter());
  }

  static const std::shared_ptr<Backend>& cpu() {
    static const std::shared_ptr<Backend> b = make_cpu_backend();
    return b;
  }

  void ok(int rc, const char* what) const {
    if (rc == PIA_CUDA_OK) return;
    const char* code = rc == PIA_CUDA_ERR_OOM ? "E_OUT_OF_MEMORY" : rc == PIA_CUDA_ERR_ARG ? "E_INVALID_ARGUMENT" : "E_BACKEND";
    throw_error(code, std::string("cuda ") + what + ": " + ops_->last_error());
  }

  Tensor alloc(const Shape& shape, DType dt) {
    for (int64_t d : shape) {
      if (d < 0) bad("cuda", "negative dimension in shape " + shape_str(shape));
    }
    const size_t bytes = size_t(shape_numel(shape)) * dtype_size(dt);
    void* p = nullptr;
    if (bytes) ok(ops_->malloc(dev_, bytes, &p), "allocation");
    auto storage = Storage::adopt(p, bytes, Device::CUDA, device_deleter());
    return Tensor::from_storage(std::move(storage), 0, shape, dt);
  }

  // A host tensor (any dtype, any strides) onto the device in the compute dtype.
  Tensor to_device(const Tensor& t, const char* op) {
    if (t.device() == Device::CUDA) return arg(t, op, "x");
    Tensor h = t.to(dt_);  // no copy when already contiguous in dt_ (an mmapped weight goes straight up)
    if (!h.is_contiguous()) h = h.contiguous();
    Tensor y = alloc(h.shape(), dt_);
    ok(ops_->memcpy_h2d(dev_, y.raw(), h.raw(), h.nbytes()), op);
    return y;
  }

  Tensor on_device(const Tensor& t, const char* op, const char* what) const {
    if (!t.defined()) bad(op, std::string(what) + " is undefined");
    if (t.device() != Device::CUDA) bad(op, std::string(what) + " is not a CUDA tensor (use from_host/upload)");
    return t;
  }

  // A contiguous CUDA tensor of the compute dtype (copied/converted when it is not).
  Tensor arg(const Tensor& t, const char* op, const char* what) {
    Tensor c = on_device(t, op, what);
    if (!c.is_contiguous()) c = contiguous(c);
    if (c.dtype() != dt_) {
      Tensor y = alloc(c.shape(), dt_);
      ok(ops_->convert(dev_, dtype_code(c.dtype()), c.raw(), dtype_code(dt_), y.raw(), c.numel()), op);
      c = y;
    }
    return c;
  }
  Tensor opt_arg(const Tensor& t, const char* op, const char* what) { return t.defined() ? arg(t, op, what) : t; }
  // Strided views stay views (binary ops read them through their strides).
  Tensor view_arg(const Tensor& t, const char* op, const char* what) {
    Tensor c = on_device(t, op, what);
    return c.dtype() == dt_ ? c : arg(c, op, what);
  }
  static const void* ptr(const Tensor& t) { return t.defined() ? t.raw() : nullptr; }

  Tensor run_group_norm(const char* op, const Tensor& x_, int64_t frames, int groups, const Tensor& g_,
                        const Tensor& b_, float eps, Activation act) {
    Tensor x = arg(x_, op, "x");
    if (x.dim() < 2 || groups <= 0 || x.size(1) % groups != 0 || frames <= 0 || x.size(0) % frames != 0) {
      bad(op, "x " + shape_str(x.shape()) + " with " + std::to_string(groups) + " groups, " + std::to_string(frames) +
                  " frames");
    }
    const int64_t C = x.size(1);
    Tensor g = opt_arg(g_, op, "weight"), b = opt_arg(b_, op, "bias");
    if ((g.defined() && g.numel() != C) || (b.defined() && b.numel() != C)) bad(op, "affine size mismatch");
    Tensor y = alloc(x.shape(), dt_);
    const int64_t S = x.numel() / std::max<int64_t>(1, x.size(0) * C);
    ok(ops_->group_norm(dev_, dtype_code(dt_), x.raw(), y.raw(), x.size(0) / frames, frames, C, S, groups, ptr(g),
                        ptr(b), eps, int(act)),
       op);
    return y;
  }

  Tensor run_layer_norm(const char* op, const Tensor& x_, const Tensor& g_, const Tensor& b_, float eps,
                        const Tensor& add_, int64_t add_div) {
    Tensor x = arg(x_, op, "x");
    if (x.dim() < 1) bad(op, "scalar input");
    const int64_t D = x.size(-1), rows = x.numel() / std::max<int64_t>(D, 1);
    Tensor g = opt_arg(g_, op, "weight"), b = opt_arg(b_, op, "bias"), add = opt_arg(add_, op, "add");
    if ((g.defined() && g.numel() != D) || (b.defined() && b.numel() != D)) bad(op, "affine size mismatch");
    if (add.defined() && (add.dim() != 2 || add.size(1) != D || add.size(0) < 1 || add_div < 1 ||
                          rows % (add.size(0) * add_div))) {
      bad(op, "add " + shape_str(add.shape()) + " (every " + std::to_string(add_div) + " rows) does not tile x " +
                  shape_str(x.shape()));
    }
    Tensor y = alloc(x.shape(), dt_);
    ok(ops_->layer_norm(dev_, dtype_code(dt_), x.raw(), y.raw(), rows, D, ptr(g), ptr(b), eps, ptr(add), add_div,
                        add.defined() ? add.size(0) : 1),
       op);
    return y;
  }

  void run_attention(PiaAttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o, int64_t Sq,
                     int64_t Sk, int64_t H, int64_t D, int64_t Dv, const AttentionParams& p) {
    a.dtype = dtype_code(dt_);
    a.q = q.raw();
    a.k = k.raw();
    a.v = v.raw();
    a.o = o.raw();
    a.Sq = Sq;
    a.Sk = Sk;
    a.heads = H;
    a.D = D;
    a.Dv = Dv;
    a.scale = p.scale;
    a.causal = p.causal ? 1 : 0;
    if (std::max(D, Dv) > 512) {
      throw_error("E_UNSUPPORTED", "attention: head dim " + std::to_string(std::max(D, Dv)) +
                                       " is above the CUDA kernel's 512");
    }
    ok(ops_->attention(dev_, &a), "attention");
  }
};

const PiaCudaOps& cuda_ops() {
  const CudaApi* api = cuda_api();
  if (!api) throw_error("E_BACKEND", "CUDA is unavailable: " + cuda_status().reason);
  return api->ops;
}

void cuda_ok(int rc, const char* what) {
  if (rc == PIA_CUDA_OK) return;
  const char* code = rc == PIA_CUDA_ERR_OOM   ? "E_OUT_OF_MEMORY"
                     : rc == PIA_CUDA_ERR_ARG ? "E_INVALID_ARGUMENT"
                                              : "E_BACKEND";
  throw_error(code, std::string("cuda ") + what + ": " + cuda_ops().last_error());
}

}  // namespace

std::shared_ptr<Backend> make_cuda_backend(int device, DType dtype) {
  const PiaCudaOps& ops = cuda_ops();
  const auto& devices = cuda_status().devices;
  if (device < 0 || size_t(device) >= devices.size()) {
    throw_error("E_INVALID_ARGUMENT", "cuda:" + std::to_string(device) + " does not exist (" +
                                          std::to_string(devices.size()) + " CUDA device(s))");
  }
  return std::make_shared<CudaBackend>(device, dtype, &ops);
}

std::shared_ptr<Backend> make_backend(const std::string& device, DType dtype) {
  if (device == "cpu") return make_cpu_backend();
  if (device == "auto") return cuda_api() ? make_cuda_backend(0, dtype) : make_cpu_backend();
  if (device == "cuda") return make_cuda_backend(0, dtype);
  if (device.rfind("cuda:", 0) == 0 && device.size() > 5 &&
      device.find_first_not_of("0123456789", 5) == std::string::npos && device.size() < 10) {
    return make_cuda_backend(std::stoi(device.substr(5)), dtype);
  }
  throw_error("E_INVALID_ARGUMENT", "unknown device '" + device + "' (expected 'auto', 'cpu', 'cuda' or 'cuda:N')");
}

CudaMemoryStats cuda_memory_stats(int device) {
  CudaMemoryStats s;
  cuda_ok(cuda_ops().memory_stats(device, &s.in_use, &s.peak_in_use, &s.reserved, &s.peak_reserved), "memory_stats");
  return s;
}
void cuda_reset_peak_memory(int device) { cuda_ok(cuda_ops().reset_peak(device), "reset_peak"); }
void cuda_synchronize(int device) { cuda_ok(cuda_ops().synchronize(device), "synchronize"); }
void cuda_timer_start(int device) { cuda_ok(cuda_ops().timer_start(device), "timer_start"); }
double cuda_timer_stop(int device) {
  double s = 0;
  cuda_ok(cuda_ops().timer_stop(device, &s), "timer_stop");
  return s;
}

int cuda_set_conv_policy(int policy) { return cuda_ops().set_conv_policy(policy); }
PiaConvStats cuda_conv_stats() {
  PiaConvStats s{};
  cuda_ok(cuda_ops().conv_stats(&s), "conv_stats");
  return s;
}

}  // namespace pia
