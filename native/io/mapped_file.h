#pragma once
// A read-only memory mapping of a whole file; tensors borrowed from it keep it alive.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace pia {

class MappedFile {
 public:
  // Throws PiaException E_MODEL_NOT_FOUND (missing) or E_WEIGHTS_CORRUPT (unreadable).
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  std::string path_;
};

}  // namespace pia
