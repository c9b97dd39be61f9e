#pragma once
// Output tensors of the CPU backend come from a cache of freed large blocks: a fresh 100 MB
// allocation is mmapped and every page faults and is zeroed on first touch (~45 ms per 84 MB
// here, as long as a whole GEGLU projection's GEMM takes), while a reused block is already mapped.
#include <cstddef>

#include "../core/tensor.h"

namespace pia::cpu {

// An uninitialised contiguous tensor on the CPU.
Tensor new_tensor(const Shape& shape, DType dtype = DType::F32);

// Bytes currently held in the cache (not in use by any tensor).
size_t cached_bytes();
// Returns every cached block to the system.
void release_cached();

}  // namespace pia::cpu
