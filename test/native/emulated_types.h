#pragma once
// Stand-ins for __half and __nv_bfloat16 in the host emulations of the kernel bodies: distinct
// types of the same 2-byte storage, so a body instantiated with them keeps its pointer arithmetic,
// and the conversions round as the device's __float2half_rn / __float2bfloat16_rn do.
#include <cstdint>

#include "core/dtype.h"

namespace pia::emu {

struct F16 {
  uint16_t bits;
};
struct BF16 {
  uint16_t bits;
};
static_assert(sizeof(F16) == 2 && sizeof(BF16) == 2, "2-byte storage");

inline float to_f(float v) { return v; }
inline float to_f(F16 v) { return f16_to_f32(v.bits); }
inline float to_f(BF16 v) { return bf16_to_f32(v.bits); }

template <typename T>
T from_f(float v);
template <>
inline float from_f<float>(float v) { return v; }
template <>
inline F16 from_f<F16>(float v) { return F16{f32_to_f16(v)}; }
template <>
inline BF16 from_f<BF16>(float v) { return BF16{f32_to_bf16(v)}; }

}  // namespace pia::emu
