#include "tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

#include "errors.h"

namespace pia {

std::string shape_str(const Shape& s) {
  std::ostringstream o;
  o << '[';
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << ']';
  return o.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t acc = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

std::shared_ptr<Storage> Storage::allocate(size_t bytes, Device device) {
  if (device != Device::CPU) throw_error("E_BACKEND", "Storage::allocate: only CPU memory is allocated here");
  auto s = std::shared_ptr<Storage>(new Storage());
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = rounded ? std::aligned_alloc(64, rounded) : nullptr;
  if (rounded && !p) {
    throw_error("E_OUT_OF_MEMORY", "could not allocate " + std::to_string(bytes) + " bytes of host memory");
  }
  s->data_ = p;
  s->bytes_ = bytes;
  s->owned_ = true;
  s->device_ = device;
  return s;
}

std::shared_ptr<Storage> Storage::borrow(void* data, size_t bytes, std::shared_ptr<const void> owner, Device device) {
  auto s = std::shared_ptr<Storage>(new Storage());
  s->data_ = data;
  s->bytes_ = bytes;
  s->owner_ = std::move(owner);
  s->device_ = device;
  return s;
}

std::shared_ptr<Storage> Storage::adopt(void* data, size_t bytes, Device device, Deleter deleter) {
  auto s = std::shared_ptr<Storage>(new Storage());
  s->data_ = data;
  s->bytes_ = bytes;
  s->device_ = device;
  s->owned_ = true;
  s->deleter_ = std::move(deleter);
  return s;
}

void Storage::rehome(void* data, Device device, Deleter deleter) {
  if (deleter_) {
    deleter_(data_);
  } else if (owned_) {
    std::free(data_);
  }
  owner_.reset();
  data_ = data;
  device_ = device;
  owned_ = true;
  deleter_ = std::move(deleter);
}

Storage::~Storage() {
  if (deleter_) {
    deleter_(data_);
  } else if (owned_) {
    std::free(data_);
  }
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) {
    if (d < 0) throw_error("E_INVALID_ARGUMENT", "negative dimension in shape " + shape_str(shape));
  }
  Tensor t;
  t.storage_ = Storage::allocate(size_t(shape_numel(shape)) * dtype_size(dtype), device);
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  if (t.nbytes()) std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::borrow(void* data, const Shape& shape, DType dtype, std::shared_ptr<const void> owner, Device device) {
  Tensor t;
  t.storage_ = Storage::borrow(data, size_t(shape_numel(shape)) * dtype_size(dtype), std::move(owner), device);
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::from_storage(std::shared_ptr<Storage> storage, size_t byte_offset, const Shape& shape, DType dtype) {
  size_t need = size_t(shape_numel(shape)) * dtype_size(dtype);
  if (!storage || byte_offset + need > storage->bytes()) {
    throw_error("E_BACKEND", "tensor view " + shape_str(shape) + " does not fit its storage");
  }
  Tensor t;
  t.storage_ = std::move(storage);
  t.offset_ = byte_offset;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

bool Tensor::is_contiguous() const { return strides_ == contiguous_strides(shape_); }

Tensor Tensor::reshape(const Shape& shape) const {
  Shape s = shape;
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      if (infer >= 0) throw_error("E_INVALID_ARGUMENT", "reshape: more than one -1");
      infer = int64_t(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) s[size_t(infer)] = known ? numel() / known : 0;
  if (shape_numel(s) != numel()) {
    throw_error("E_INVALID_ARGUMENT", "reshape " + shape_str(shape_) + " -> " + shape_str(shape) + ": sizes differ");
  }
  if (!is_contiguous()) throw_error("E_BACKEND", "reshape of a non-contiguous tensor; call contiguous() first");
  Tensor t = *this;
  t.shape_ = s;
  t.strides_ = contiguous_strides(s);
  return t;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  if (d < 0) d += dim();
  if (d < 0 || d >= dim() || start < 0 || length < 0 || start + length > shape_[size_t(d)]) {
    throw_error("E_INVALID_ARGUMENT", "narrow out of range on " + shape_str(shape_));
  }
  Tensor t = *this;
  t.offset_ += size_t(start * strides_[size_t(d)]) * dtype_size(dtype_);
  t.shape_[size_t(d)] = length;
  return t;
}

Tensor Tensor::permute(const std::vector<int64_t>& order) const {
  if (order.size() != shape_.size()) throw_error("E_INVALID_ARGUMENT", "permute: wrong number of dims");
  Tensor t = *this;
  std::vector<bool> seen(order.size(), false);
  for (size_t i = 0; i < order.size(); ++i) {
    int64_t o = order[i];
    if (o < 0 || o >= dim() || seen[size_t(o)]) throw_error("E_INVALID_ARGUMENT", "permute: bad order");
    seen[size_t(o)] = true;
    t.shape_[i] = shape_[size_t(o)];
    t.strides_[i] = strides_[size_t(o)];
  }
  return t;
}

namespace {
// Walks every index of `shape` in row-major order, calling f(src_element_offset, dst_linear).
template <typename F>
void for_each_strided(const Shape& shape, const Shape& strides, F&& f) {
  int64_t n = shape_numel(shape);
  if (n == 0) return;
  size_t nd = shape.size();
  if (nd == 0) {
    f(0, 0);
    return;
  }
  std::vector<int64_t> idx(nd, 0);
  int64_t off = 0;
  int64_t inner = shape[nd - 1], inner_stride = strides[nd - 1];
  for (int64_t lin = 0; lin < n; lin += inner) {
    for (int64_t j = 0; j < inner; ++j) f(off + j * inner_stride, lin + j);
    for (size_t d = nd - 1; d-- > 0;) {
      if (++idx[d] < shape[d]) {
        off += strides[d];
        break;
      }
      off -= strides[d] * (shape[d] - 1);
      idx[d] = 0;
    }
  }
}
}  // namespace

Tensor Tensor::contiguous() const {
  if (device() != Device::CPU) throw_error("E_BACKEND", "contiguous() on a device tensor");
  Tensor out = empty(shape_, dtype_);
  size_t es = dtype_size(dtype_);
  const char* src = static_cast<const char*>(raw());
  char* dst = static_cast<char*>(out.raw());
  if (is_contiguous()) {
    if (nbytes()) std::memcpy(dst, src, nbytes());
    return out;
  }
  for_each_strided(shape_, strides_, [&](int64_t so, int64_t di) { std::memcpy(dst + di * es, src + so * es, es); });
  return out;
}

Tensor Tensor::clone() const { return contiguous(); }

Tensor Tensor::to(DType target) const {
  if (target == dtype_ && is_contiguous()) return *this;
  Tensor src = is_contiguous() ? *this : contiguous();
  if (target == dtype_) return src;
  Tensor out = empty(shape_, target);
  int64_t n = numel();
  auto load = [&](int64_t i) -> float {
    switch (dtype_) {
      case DType::F32: return src.data<float>()[i];
      case DType::F16: return f16_to_f32(src.data<uint16_t>()[i]);
      case DType::BF16: return bf16_to_f32(src.data<uint16_t>()[i]);
    }
    return 0.f;
  };
  for (int64_t i = 0; i < n; ++i) {
    float v = load(i);
    switch (target) {
      case DType::F32: out.data<float>()[i] = v; break;
      case DType::F16: out.data<uint16_t>()[i] = f32_to_f16(v); break;
      case DType::BF16: out.data<uint16_t>()[i] = f32_to_bf16(v); break;
    }
  }
  return out;
}

}  // namespace pia
