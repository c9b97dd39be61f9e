#pragma once
// Reader for the zip container torch.save writes since torch 1.6 (PyTorchStreamWriter): local
// headers, a central directory and, for big files, zip64 records. torch stores every entry
// uncompressed, so entries are exposed as byte ranges of the mapping; a compressed or encrypted
// entry is reported only when someone asks for its bytes.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mapped_file.h"

namespace pia {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 = stored
  uint16_t flags = 0;
  uint64_t compressed_size = 0, size = 0;
  uint64_t local_header_offset = 0;
  uint64_t data_offset = 0;  // start of the (stored) bytes in the file, resolved from the local header
};

class ZipReader {
 public:
  // True when the file starts like a zip archive (local header or empty-archive record).
  static bool looks_like_zip(const uint8_t* data, size_t size);
  // Validates the central directory and every local header (all ranges inside the file).
  // Throws E_WEIGHTS_CORRUPT naming the file.
  explicit ZipReader(std::shared_ptr<MappedFile> file);

  const std::vector<ZipEntry>& entries() const { return entries_; }  // in directory order
  const ZipEntry* find(const std::string& name) const;
  // The bytes of a stored entry; E_UNSUPPORTED for a compressed or encrypted one.
  const uint8_t* data(const ZipEntry& e) const;
  const std::shared_ptr<MappedFile>& file() const { return file_; }

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<ZipEntry> entries_;
  std::map<std::string, size_t> by_name_;
};

}  // namespace pia
