#pragma once
// The ops the networks are written against. native/nn calls only these (never a kernel directly),
// so one network definition runs on every backend. Each op allocates its result on the backend's
// device; inputs must live there too (weights go through upload()).
//
// Semantics follow torch exactly (the fixtures are diffusers/torch outputs); layouts are row-major:
// activations NCHW (images) or [B, S, C] (token sequences). Unless stated, inputs must be
// contiguous and float32 (the CPU backend's activation dtype); weights may be F32, F16 or BF16.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../core/tensor.h"

namespace pia {

enum class Activation : uint8_t { None, SiLU, GELU, GELUTanh, QuickGELU };
enum class BinaryOp : uint8_t { Add, Sub, Mul, Div };

struct Conv2dParams {
  int stride = 1;
  // torch padding=p is {p, p, p, p}; diffusers' Downsample2D(padding=0) pads (0, 1, 0, 1) first.
  int pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  static Conv2dParams same(int pad, int stride = 1) { return {stride, pad, pad, pad, pad}; }
};

struct AttentionParams {
  int heads = 1;
  float scale = 1.f;    // applied to q·kᵀ before softmax (diffusers: head_dim ** -0.5)
  bool causal = false;  // CLIP's text encoder masks future tokens
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Device device() const = 0;

  // --- memory -------------------------------------------------------------------------------------
  // A weight into the backend's preferred layout/dtype (may keep f16/bf16 as stored).
  virtual Tensor upload(const Tensor& host) = 0;
  // An activation (float32 host tensor) onto the device, and back.
  virtual Tensor from_host(const Tensor& host) = 0;
  virtual Tensor to_host(const Tensor& x) = 0;
  virtual Tensor zeros(const Shape& shape) = 0;
  // Contiguous copy of a (possibly strided: narrow/permute view) tensor.
  virtual Tensor contiguous(const Tensor& x) = 0;
  // Concatenation along `dim` (all other sizes equal).
  virtual Tensor cat(const std::vector<Tensor>& xs, int dim) = 0;

  // --- linear algebra -----------------------------------------------------------------------------
  // y[..., out] = x[..., in] · Wᵀ + b, W [out, in] (torch.nn.Linear). `act` is applied after the bias.
  virtual Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias, Activation act = Activation::None) = 0;
  // Batched matmul: a [B, M, K] (or [M, K]) × b [B, K, N]; with trans_b, b is [B, N, K].
  virtual Tensor matmul(const Tensor& a, const Tensor& b, bool trans_b = false) = 0;
  // torch.nn.Conv2d with groups=1, dilation=1: x [N, Cin, H, W], w [Cout, Cin, kh, kw], bias [Cout] or undefined.
  virtual Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p) = 0;

  // --- normalisation ------------------------------------------------------------------------------
  // torch.nn.GroupNorm on x [N, C, *] (statistics in float32 over C/groups × spatial), then the
  // per-channel affine; `act` fused after (GroupNorm+SiLU in ResnetBlock2D).
  virtual Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                            Activation act = Activation::None) = 0;
  // GroupNorm of x [N·frames, C, *] as torch computes it on the (N, C, frames, *) permutation: the
  // statistics of sample n pool its `frames` consecutive entries (TransformerTemporalModel's norm
  // on the (B·F, C, H, W) activations, without the permute copies); y keeps x's layout. The
  // default permutes, calls group_norm and permutes back (native/ops/backend_defaults.cpp).
  virtual Tensor group_norm_frames(const Tensor& x, int64_t frames, int groups, const Tensor& gamma,
                                   const Tensor& beta, float eps);
  // torch.nn.LayerNorm over the last dim.
  virtual Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) = 0;
  // layer_norm(x) + a row of `add` [P, D]: row r of x (as [R, D]) gets add[(r / add_div) % P]. The
  // motion modules' norm1/norm2 followed by their sinusoidal positions in one pass (P frames;
  // add_div 1 for [N, F, D] sequences, HW for the frame-major [B·F, HW, D]). The default runs
  // layer_norm and a broadcast add (native/ops/backend_defaults.cpp).
  virtual Tensor layer_norm_add(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps, const Tensor& add,
                                int64_t add_div);

  // --- attention ----------------------------------------------------------------------------------
  // softmax(scale · q kᵀ) v per head: q [B, Sq, H·D], k [B, Sk, H·D], v [B, Sk, H·Dv] -> [B, Sq, H·Dv].
  // Heads are contiguous slices of the channel dim (diffusers' head_to_batch_dim). Never
  // materialises the full [Sq, Sk] score matrix.
  virtual Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p) = 0;
  // Attention over frames (the motion modules' TransformerTemporalModel): q [B·F, HW, H·D],
  // k [B·F, HW, H·D], v [B·F, HW, H·Dv] in the frame-major layout of the spatial blocks; the F
  // frames of every (b, pixel) form one sequence -> [B·F, HW, H·Dv]. Exactly: permute to
  // [B·HW, F, ·], attention(), permute back (the default, native/ops/backend_defaults.cpp);
  // a backend may instead read the strided layout in place.
  virtual Tensor temporal_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t frames,
                                    const AttentionParams& p);

  // --- elementwise --------------------------------------------------------------------------------
  // Numpy-style broadcasting of b against a (b's dims right-aligned, size-1 dims broadcast).
  virtual Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) = 0;
  // a += alpha * b, same shapes (residual adds without a new allocation).
  virtual void add_(Tensor& a, const Tensor& b, float alpha = 1.f) = 0;
  // y = x * s + t
  virtual Tensor affine(const Tensor& x, float s, float t = 0.f) = 0;
  virtual Tensor activation(const Tensor& x, Activation act) = 0;
  // diffusers GEGLU: x [..., 2n] -> x[..., :n] * gelu(x[..., n:]) (exact erf GELU).
  virtual Tensor geglu(const Tensor& x) = 0;

  // --- resampling and misc ------------------------------------------------------------------------
  // F.interpolate(x, scale_factor=2, mode="nearest") on NCHW.
  virtual Tensor upsample_nearest2x(const Tensor& x) = 0;
  // Rows of `table` [V, D] (weights, any float dtype) for each id -> [ids.size(), D].
  virtual Tensor embedding(const Tensor& table, const std::vector<int64_t>& ids) = 0;
  // diffusers get_timestep_embedding -> [timesteps.size(), dim].
  virtual Tensor timestep_embedding(const std::vector<float>& timesteps, int dim, bool flip_sin_to_cos,
                                    float downscale_freq_shift) = 0;
  // diffusers' FreeU fourier_filter on x [N, C, H, W]: fftn over (H, W), fftshift, scale the
  // centred (2·threshold)² low-frequency box by `scale`, back, real part.
  virtual Tensor fourier_filter(const Tensor& x, int threshold, float scale) = 0;

  // --- residency (diffusers' enable_model_cpu_offload) ----------------------------------------------
  // Moves every weight uploaded through this backend into host memory (false) or back onto the
  // device (true); the weight tensors keep their identity, only where their bytes live changes.
  // Nothing to do where weights already live in host memory (the CPU backend). Never while a call
  // is running on these weights: the caller serialises.
  virtual void set_weights_resident(bool on_device) { (void)on_device; }
};

// The CPU backend (always available).
std::shared_ptr<Backend> make_cpu_backend();

}  // namespace pia
