// The defaults of Backend's layout-aware ops (temporal_attention, group_norm_frames): the
// permute/op/permute compositions that diffusers' TransformerTemporalModel performs with its
// reshapes, out of the backend's own ops. A backend overrides them to work in place.
#include <algorithm>

#include "../core/errors.h"
#include "../ops/backend.h"

namespace pia {

namespace {

// [B·F, HW, C] -> [B·HW, F, C] (and back with the roles of F and HW swapped).
Tensor swap_frames_and_pixels(Backend& be, const Tensor& x, int64_t outer, int64_t a, int64_t b) {
  const Tensor c = x.is_contiguous() ? x : be.contiguous(x);
  const int64_t C = c.size(2);
  return be.contiguous(c.reshape({outer, a, b, C}).permute({0, 2, 1, 3})).reshape({outer * b, a, C});
}

}  // namespace

Tensor Backend::temporal_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t frames,
                                   const AttentionParams& p) {
  PIA_CHECK(q.defined() && k.defined() && v.defined() && q.dim() == 3 && k.dim() == 3 && v.dim() == 3,
            "E_INVALID_ARGUMENT", "temporal_attention: q, k, v must be [B·F, HW, C]");
  PIA_CHECK(frames > 0 && q.size(0) % frames == 0 && k.size(0) == q.size(0) && v.size(0) == q.size(0) &&
                k.size(1) == q.size(1) && v.size(1) == q.size(1),
            "E_INVALID_ARGUMENT",
            "temporal_attention: q " + shape_str(q.shape()) + ", k " + shape_str(k.shape()) + ", v " +
                shape_str(v.shape()) + " with " + std::to_string(frames) + " frames");
  const int64_t B = q.size(0) / frames, HW = q.size(1);
  Tensor o = attention(swap_frames_and_pixels(*this, q, B, frames, HW), swap_frames_and_pixels(*this, k, B, frames, HW),
                       swap_frames_and_pixels(*this, v, B, frames, HW), p);
  return swap_frames_and_pixels(*this, o, B, HW, frames);
}

Tensor Backend::group_norm_frames(const Tensor& x, int64_t frames, int groups, const Tensor& gamma,
                                  const Tensor& beta, float eps) {
  PIA_CHECK(x.defined() && x.dim() >= 2 && frames > 0 && x.size(0) % frames == 0, "E_INVALID_ARGUMENT",
            "group_norm_frames: x " + (x.defined() ? shape_str(x.shape()) : std::string("undefined")) + " with " +
                std::to_string(frames) + " frames");
  const int64_t N = x.size(0) / frames, C = x.size(1), S = x.numel() / std::max<int64_t>(1, x.size(0) * C);
  const Tensor c = x.is_contiguous() ? x : contiguous(x);
  // (N·F, C, S) -> (N, C, F, S), normalise, and back.
  Tensor t = contiguous(c.reshape({N, frames, C, S}).permute({0, 2, 1, 3}));
  t = group_norm(t, groups, gamma, beta, eps);
  return contiguous(t.permute({0, 2, 1, 3})).reshape(x.shape());
}

Tensor Backend::layer_norm_add(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps, const Tensor& add,
                               int64_t add_div) {
  PIA_CHECK(x.defined() && add.defined() && x.dim() >= 1 && add.dim() == 2 && add.size(1) == x.size(-1) && add_div > 0,
            "E_INVALID_ARGUMENT", "layer_norm_add: x and add [P, D] do not match");
  const int64_t D = x.size(-1), P = add.size(0), R = x.numel() / std::max<int64_t>(D, 1);
  PIA_CHECK(P > 0 && R % (P * add_div) == 0, "E_INVALID_ARGUMENT",
            "layer_norm_add: " + std::to_string(R) + " rows are not whole periods of " + std::to_string(P) + " x " +
                std::to_string(add_div));
  const Tensor y = layer_norm(x, gamma, beta, eps);
  return binary(BinaryOp::Add, y.reshape({R / (P * add_div), P, add_div, D}), add.reshape({1, P, 1, D}))
      .reshape(x.shape());
}

}  // namespace pia
