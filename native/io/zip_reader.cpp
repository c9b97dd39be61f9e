#include "zip_reader.h"

#include "../core/errors.h"

namespace pia {

namespace {

constexpr uint32_t kLocalHeader = 0x04034b50, kCentralHeader = 0x02014b50, kEndOfDirectory = 0x06054b50,
                   kZip64Locator = 0x07064b50, kZip64EndOfDirectory = 0x06064b50;

uint64_t le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

bool ZipReader::looks_like_zip(const uint8_t* data, size_t size) {
  return size >= 4 && (le(data, 4) == kLocalHeader || le(data, 4) == kEndOfDirectory);
}

ZipReader::ZipReader(std::shared_ptr<MappedFile> file) : file_(std::move(file)) {
  const std::string& path = file_->path();
  const uint8_t* base = file_->data();
  const uint64_t size = file_->size();
  auto corrupt = [&](const std::string& what) -> void {
    throw_error("E_WEIGHTS_CORRUPT", path + ": zip container: " + what, {}, path);
  };
  // Inside the file: [off, off + n).
  auto inside = [&](uint64_t off, uint64_t n) { return off <= size && n <= size - off; };

  // The end-of-central-directory record sits in the last 22 + 65535 (comment) bytes.
  if (size < 22) corrupt("file is too short for an end-of-central-directory record");
  uint64_t eocd = UINT64_MAX;
  const uint64_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
  for (uint64_t p = size - 22 + 1; p-- > lowest;) {
    if (le(base + p, 4) == kEndOfDirectory && p + 22 + le(base + p + 20, 2) == size) {
      eocd = p;
      break;
    }
  }
  if (eocd == UINT64_MAX) corrupt("no end-of-central-directory record (truncated?)");
  uint64_t count = le(base + eocd + 10, 2);
  uint64_t dir_size = le(base + eocd + 12, 4);
  uint64_t dir_offset = le(base + eocd + 16, 4);
  if (count == 0xffff || dir_size == 0xffffffffu || dir_offset == 0xffffffffu) {
    // zip64: a locator just before the record points at the zip64 end-of-central-directory.
    if (eocd < 20 || le(base + eocd - 20, 4) != kZip64Locator) corrupt("zip64 sizes without a zip64 locator");
    uint64_t z64 = le(base + eocd - 20 + 8, 8);
    if (!inside(z64, 56) || le(base + z64, 4) != kZip64EndOfDirectory) corrupt("bad zip64 end-of-central-directory offset");
    count = le(base + z64 + 32, 8);
    dir_size = le(base + z64 + 40, 8);
    dir_offset = le(base + z64 + 48, 8);
  }
  if (!inside(dir_offset, dir_size)) corrupt("central directory lies outside the file");
  // Each directory record takes at least 46 bytes: bounds the entry count before any allocation.
  if (count > dir_size / 46) corrupt("central directory claims " + std::to_string(count) + " entries in " +
                                     std::to_string(dir_size) + " bytes");
  entries_.reserve(size_t(count));
  uint64_t p = dir_offset;
  const uint64_t dir_end = dir_offset + dir_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (p > dir_end || dir_end - p < 46 || le(base + p, 4) != kCentralHeader) corrupt("bad central directory record");
    ZipEntry e;
    e.flags = uint16_t(le(base + p + 8, 2));
    e.method = uint16_t(le(base + p + 10, 2));
    e.compressed_size = le(base + p + 20, 4);
    e.size = le(base + p + 24, 4);
    uint64_t name_len = le(base + p + 28, 2), extra_len = le(base + p + 30, 2), comment_len = le(base + p + 32, 2);
    e.local_header_offset = le(base + p + 42, 4);
    if (dir_end - p - 46 < name_len + extra_len + comment_len) corrupt("central directory record runs past the directory");
    e.name.assign(reinterpret_cast<const char*>(base + p + 46), size_t(name_len));
    // zip64 extended information: the fields that were saturated, in this order.
    const uint8_t* x = base + p + 46 + name_len;
    const uint8_t* x_end = x + extra_len;
    while (x_end - x >= 4) {
      uint64_t id = le(x, 2), len = le(x + 2, 2);
      if (uint64_t(x_end - x - 4) < len) corrupt("extra field runs past its record in '" + e.name + "'");
      if (id == 1) {
        const uint8_t* f = x + 4;
        uint64_t left = len;
        auto take = [&](uint64_t& v) {
          if (v != 0xffffffffu) return;
          if (left < 8) corrupt("short zip64 extra field in '" + e.name + "'");
          v = le(f, 8);
          f += 8;
          left -= 8;
        };
        take(e.size);
        take(e.compressed_size);
        take(e.local_header_offset);
      }
      x += 4 + len;
    }
    p += 46 + name_len + extra_len + comment_len;

    const uint64_t lh = e.local_header_offset;
    if (!inside(lh, 30) || le(base + lh, 4) != kLocalHeader) corrupt("bad local header for '" + e.name + "'");
    uint64_t data = lh + 30 + le(base + lh + 26, 2) + le(base + lh + 28, 2);
    if (!inside(data, e.compressed_size)) corrupt("data of '" + e.name + "' runs past the end of the file (truncated?)");
    if (e.method == 0 && e.compressed_size != e.size) corrupt("stored entry '" + e.name + "' has two different sizes");
    e.data_offset = data;
    if (!by_name_.emplace(e.name, entries_.size()).second) corrupt("entry '" + e.name + "' appears twice");
    entries_.push_back(std::move(e));
  }
}

const ZipEntry* ZipReader::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

const uint8_t* ZipReader::data(const ZipEntry& e) const {
  if (e.flags & 1) {
    throw_error("E_UNSUPPORTED", file_->path() + ": zip entry '" + e.name + "' is encrypted", e.name, file_->path());
  }
  if (e.method != 0) {
    throw_error("E_UNSUPPORTED",
                file_->path() + ": zip entry '" + e.name + "' is compressed (method " + std::to_string(e.method) +
                    "); torch.save stores entries uncompressed — re-save the checkpoint with torch.save",
                e.name, file_->path());
  }
  return file_->data() + e.data_offset;
}

}  // namespace pia
