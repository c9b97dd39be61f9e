#pragma once
// One Tensor type for the whole core: shape, strides (in elements), dtype, device, and storage
// that is either owned (allocated here) or borrowed (an mmapped weight file kept alive by `owner`).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dtype.h"

namespace pia {

enum class Device : uint8_t { CPU, CUDA };

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

class Storage {
 public:
  // Owned, 64-byte aligned host memory (the SIMD kernels like aligned rows).
  static std::shared_ptr<Storage> allocate(size_t bytes, Device device = Device::CPU);
  // Memory that lives elsewhere; `owner` keeps it alive (e.g. the mapping of a weight file).
  static std::shared_ptr<Storage> borrow(void* data, size_t bytes, std::shared_ptr<const void> owner,
                                         Device device = Device::CPU);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  bool owned() const { return owned_; }

  // Set by a backend that owns device memory (CUDA frees through its own allocator).
  using Deleter = std::function<void(void*)>;
  static std::shared_ptr<Storage> adopt(void* data, size_t bytes, Device device, Deleter deleter);
  // Moves the bytes to a new home (model CPU offload: device <-> host) under the same Storage, so
  // every tensor viewing it follows. The old memory is released as it would have been at
  // destruction. The caller copies the bytes first and makes sure nothing reads them meanwhile.
  void rehome(void* data, Device device, Deleter deleter);

 private:
  Storage() = default;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_ = Device::CPU;
  bool owned_ = false;
  std::shared_ptr<const void> owner_;
  Deleter deleter_;
};

class Tensor {
 public:
  Tensor() = default;
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32);
  static Tensor borrow(void* data, const Shape& shape, DType dtype, std::shared_ptr<const void> owner,
                       Device device = Device::CPU);
  static Tensor from_storage(std::shared_ptr<Storage> storage, size_t byte_offset, const Shape& shape, DType dtype);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t dim() const { return int64_t(shape_.size()); }
  int64_t size(int64_t i) const { return shape_.at(size_t(i < 0 ? i + dim() : i)); }
  int64_t stride(int64_t i) const { return strides_.at(size_t(i < 0 ? i + dim() : i)); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::CPU; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  bool is_contiguous() const;

  void* raw() const { return static_cast<char*>(storage_->data()) + offset_; }
  template <typename T>
  T* data() const { return static_cast<T*>(raw()); }

  // Views share storage. reshape needs a contiguous tensor (it never copies silently).
  Tensor reshape(const Shape& shape) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor permute(const std::vector<int64_t>& order) const;
  // Copies into a new owned, contiguous tensor (strided gather when needed).
  Tensor contiguous() const;
  Tensor clone() const;
  // Widens/narrows on the CPU; returns *this when already of that dtype and contiguous.
  Tensor to(DType dtype) const;

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // bytes
  Shape shape_, strides_;
  DType dtype_ = DType::F32;
};

Shape contiguous_strides(const Shape& shape);

}  // namespace pia
