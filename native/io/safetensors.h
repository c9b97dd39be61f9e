#pragma once
// Reader for the safetensors format (github.com/huggingface/safetensors, "Format"):
// 8-byte little-endian header size N, N bytes of JSON, then the byte buffer. Everything in the
// header is validated before any tensor is exposed; tensors are views into the mapping.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../core/tensor.h"
#include "mapped_file.h"
#include "weight_file.h"

namespace pia {

// name, dtype (as written in the file: F32, F16, BF16, I64, ...) and shape come from WeightEntry.
struct SafetensorsEntry : WeightEntry {
  uint64_t begin = 0, end = 0;  // relative to the start of the byte buffer
};

// Element size of a file dtype, or 0 when the dtype is unknown.
size_t safetensors_dtype_size(const std::string& dtype);

class SafetensorsFile : public WeightFile {
 public:
  // Largest header we accept: real checkpoints stay far below (a 1,000-tensor header is ~100 KB).
  static constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  // Validates the header of an opened file.
  static std::shared_ptr<SafetensorsFile> parse(std::shared_ptr<MappedFile> file);

  const std::string& path() const override { return file_->path(); }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }  // sorted by name
  std::vector<const WeightEntry*> weight_entries() const override;
  const SafetensorsEntry* find(const std::string& name) const override;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Bytes of one tensor inside the mapping.
  const uint8_t* bytes(const SafetensorsEntry& e) const { return data_ + e.begin; }
  // A float tensor (F32/F16/BF16) without copying when its bytes are aligned; copied otherwise.
  // Throws E_WEIGHTS_MISMATCH for a missing name, E_UNSUPPORTED for a non-float dtype.
  Tensor tensor(const std::string& name) const override;

 private:
  std::shared_ptr<MappedFile> file_;
  const uint8_t* data_ = nullptr;  // start of the byte buffer
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace pia
