// Backend's defaults for what only some backends do (captured steps).
#include "backend.h"

#include <cstring>

#include "../core/errors.h"

namespace pia {

void Backend::begin_capture() { throw_error("E_UNSUPPORTED", name() + " cannot capture steps"); }

std::unique_ptr<CapturedStep> Backend::end_capture() {
  throw_error("E_UNSUPPORTED", name() + " cannot capture steps");
}

// For backends whose tensors live in host memory (the CPU backend and tests built on it).
void Backend::copy_into(Tensor& dst, const Tensor& src) {
  PIA_CHECK(dst.defined() && src.defined() && dst.shape() == src.shape(), "E_INVALID_ARGUMENT",
            "copy_into: shapes differ");
  PIA_CHECK(dst.device() == Device::CPU && src.device() == Device::CPU && dst.is_contiguous(), "E_INVALID_ARGUMENT",
            "copy_into: " + name() + " copies only between contiguous host tensors");
  const Tensor s = src.to(dst.dtype()).contiguous();
  if (s.nbytes()) std::memcpy(dst.raw(), s.raw(), s.nbytes());
}

}  // namespace pia
