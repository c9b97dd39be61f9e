// Backend::temporal_attention's default: the permute/attention/permute composition that diffusers'
// TransformerTemporalModel performs with its reshapes, out of the backend's own ops.
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

}  // namespace pia
