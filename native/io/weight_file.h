#pragma once
// A file of named tensors, whatever its format (safetensors, a torch checkpoint's state dict), so
// WeightStore and the loaders do not care which one a user handed us. open_weight_file() picks the
// reader by content, never by extension (model sites rename .ckpt/.pt/.bin freely).
#include <memory>
#include <string>
#include <vector>

#include "../core/tensor.h"

namespace pia {

struct WeightEntry {
  std::string name;
  std::string dtype;  // safetensors spelling: F32, F16, BF16, I64, ...
  Shape shape;
};

class WeightFile {
 public:
  virtual ~WeightFile() = default;
  virtual const std::string& path() const = 0;
  // Every tensor, sorted by name.
  virtual std::vector<const WeightEntry*> weight_entries() const = 0;
  // nullptr when absent.
  virtual const WeightEntry* find(const std::string& name) const = 0;
  // A float tensor (F32/F16/BF16), borrowed from the mapping when possible. Throws
  // E_WEIGHTS_MISMATCH for a missing name, E_UNSUPPORTED for an integer dtype.
  virtual Tensor tensor(const std::string& name) const = 0;
};

// Safetensors header, torch zip (torch.save >= 1.6) or legacy torch pickle, chosen by the first bytes.
// Throws E_MODEL_NOT_FOUND, E_WEIGHTS_CORRUPT, E_UNSAFE_PICKLE or E_UNSUPPORTED naming the file.
std::shared_ptr<WeightFile> open_weight_file(const std::string& path);

}  // namespace pia
