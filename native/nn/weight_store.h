#pragma once
// Weights by their diffusers state-dict keys. A network asks for each key with the shape it
// expects; a missing key or a wrong shape is E_WEIGHTS_MISMATCH naming the key, and keys nobody
// asked for are reported by check_all_used() (except those diffusers ignores too).
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "../core/tensor.h"
#include "../io/safetensors.h"
#include "../io/weight_file.h"

namespace pia {

class WeightStore {
 public:
  // Every tensor of the file becomes available under its own name (sharded checkpoints: add each shard).
  // Any WeightFile: a SafetensorsFile, or a torch checkpoint's TorchStateDict (io/open_weight_file).
  void add_file(std::shared_ptr<WeightFile> file, const std::string& prefix_to_strip = {});
  // Tensors of a file registered under other names (a single-file checkpoint's LDM keys mapped to
  // diffusers keys in lib/loaders): borrowed views, nothing copied. `squeeze` drops trailing 1-sized
  // dims of a 4-D tensor ([C,C,1,1] 1x1-conv weights read as Linear [C,C]); a view since it is
  // contiguous. File tensors the map does not name are not registered.
  struct KeyAlias {
    std::string key, file_key;
    bool squeeze = false;
  };
  void add_file_mapped(std::shared_ptr<WeightFile> file, const std::vector<KeyAlias>& aliases);
  // A tensor made elsewhere (key-converted or fused weights).
  void put(const std::string& key, Tensor t);
  bool has(const std::string& key) const;
  // The raw (file dtype, possibly borrowed from the mapping) tensor; shape checked unless `expected` is empty.
  Tensor get(const std::string& key, const Shape& expected = {});
  // Shape of a key without marking it used (architecture inference).
  Shape shape_of(const std::string& key) const;
  // Keys that may be present without being used (buffers such as position_ids).
  void ignore_key(const std::string& key) { ignored_.insert(key); }
  void ignore_prefix(const std::string& prefix) { ignored_prefixes_.push_back(prefix); }
  // Throws E_WEIGHTS_MISMATCH for the first key that nobody consumed.
  void check_all_used() const;
  std::vector<std::string> keys() const;
  // Name used in error messages ("unet", "vae", ...).
  void set_label(std::string label) { label_ = std::move(label); }

 private:
  struct Entry {
    std::shared_ptr<WeightFile> file;
    std::string file_key;
    Tensor tensor;  // when put() directly
    bool squeeze = false;
  };
  Shape entry_shape(const Entry& e) const;
  // " (file key 'x')" when a mapped entry's file name differs from its key: errors name both.
  static std::string origin(const std::string& key, const Entry& e);
  std::map<std::string, Entry> entries_;
  std::set<std::string> used_, ignored_;
  std::vector<std::string> ignored_prefixes_;
  std::string label_ = "model";
};

}  // namespace pia
