#pragma once
// PyTorch checkpoints (.ckpt / .pt / .bin) read WITHOUT executing anything: the zip format of
// torch.save >= 1.6 and the legacy pickle stream of older torch (serialization.py, _legacy_load).
// The pickle runs in a restricted machine (pickle_reader.h) whose only globals are the ones torch
// uses to rebuild tensors; any other name is E_UNSAFE_PICKLE before anything could run — and
// nothing ever runs: "calling" an allowed name just builds a plain value.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../core/tensor.h"
#include "mapped_file.h"
#include "pickle_reader.h"
#include "weight_file.h"

namespace pia {

struct TorchStorage {
  std::string key;
  std::string dtype;      // F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL
  size_t element_size = 0;
  uint64_t numel = 0;     // elements
  const uint8_t* data = nullptr;  // inside the mapping, numel * element_size bytes
};

struct TorchTensor {
  size_t storage = 0;     // index into storages()
  std::string dtype;
  uint64_t offset = 0;    // elements into the storage
  Shape shape, strides;   // strides in elements
  bool requires_grad = false;
};

class TorchCheckpoint {
 public:
  static std::shared_ptr<TorchCheckpoint> open(const std::string& path);
  static std::shared_ptr<TorchCheckpoint> parse(std::shared_ptr<MappedFile> file);
  // The legacy format starts with a pickled protocol-2+ integer (torch's magic number).
  static bool looks_like_legacy(const uint8_t* data, size_t size);

  const std::string& path() const { return file_->path(); }
  // The unpickled object: dicts, lists, tuples, scalars, strings and Tensor values.
  const PickleValue& root() const { return *root_; }
  const std::vector<TorchStorage>& storages() const { return storages_; }
  const std::vector<TorchTensor>& tensors() const { return tensors_; }
  const TorchTensor& tensor_of(const PickleValue& v) const;  // v must be a Tensor value

  // Row-major bytes of a tensor (any dtype): numel * element size bytes written to dst.
  void copy_bytes(const TorchTensor& t, uint8_t* dst) const;
  size_t byte_size(const TorchTensor& t) const;
  // F32/F16/BF16 as a pia::Tensor borrowed from the mapping when contiguous and aligned (copied
  // otherwise); F64 narrowed to F32; integer dtypes are E_UNSUPPORTED. `name` is for messages.
  Tensor to_tensor(const TorchTensor& t, const std::string& name) const;

  // The dict found by following string keys from the root (empty: the root itself); nullptr if
  // there is none.
  const PickleValue* dict_at(const std::vector<std::string>& keys) const;

  // Structural limits.
  static constexpr size_t kMaxNesting = 100;

 private:
  friend class TorchPickleHooks;
  TorchCheckpoint() = default;
  void parse_zip();
  void parse_legacy();
  void validate_tensors();

  std::shared_ptr<MappedFile> file_;
  std::unique_ptr<class TorchPickleHooks> hooks_;
  std::unique_ptr<PickleMachine> machine_;
  const PickleValue* root_ = nullptr;
  std::vector<TorchStorage> storages_;
  std::map<std::string, size_t> storage_by_key_;
  std::vector<TorchTensor> tensors_;
 public:
  ~TorchCheckpoint();
};

// The flat "state dict" view: the tensors directly under a dict of the checkpoint (by default the
// root; e.g. {"state_dict"} for a Lightning wrapper, {"string_to_param"} for an A1111 embedding).
// Entries that are not tensors (step counters, names) are skipped.
class TorchStateDict : public WeightFile {
 public:
  TorchStateDict(std::shared_ptr<TorchCheckpoint> ckpt, const std::vector<std::string>& keys = {});
  const std::string& path() const override { return ckpt_->path(); }
  std::vector<const WeightEntry*> weight_entries() const override;
  const WeightEntry* find(const std::string& name) const override;
  Tensor tensor(const std::string& name) const override;
  const TorchTensor& torch_tensor(const std::string& name) const;
  const TorchCheckpoint& checkpoint() const { return *ckpt_; }

 private:
  std::shared_ptr<TorchCheckpoint> ckpt_;
  std::vector<WeightEntry> entries_;  // sorted by name
  std::vector<size_t> tensor_index_;  // parallel to entries_
};

}  // namespace pia
