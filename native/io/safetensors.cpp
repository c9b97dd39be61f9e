#include "safetensors.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "../core/errors.h"
#include "../core/json.h"

namespace pia {

size_t safetensors_dtype_size(const std::string& d) {
  static const std::map<std::string, size_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8}};
  auto it = sizes.find(d);
  return it == sizes.end() ? 0 : it->second;
}

namespace {

[[noreturn]] void corrupt(const std::string& path, const std::string& what, const std::string& key = {}) {
  throw_error("E_WEIGHTS_CORRUPT", path + ": " + (key.empty() ? "" : "tensor '" + key + "': ") + what, key, path);
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) { return parse(MappedFile::open(path)); }

std::shared_ptr<SafetensorsFile> SafetensorsFile::parse(std::shared_ptr<MappedFile> file) {
  const std::string& path = file->path();
  const uint8_t* base = file->data();
  uint64_t size = file->size();
  if (size < 8) corrupt(path, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  uint64_t n = read_le64(base);
  if (n > kMaxHeaderBytes) corrupt(path, "header length " + std::to_string(n) + " exceeds the 100 MiB limit");
  if (n > size - 8) {
    corrupt(path, "header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) +
                      " bytes; truncated?)");
  }
  const char* header = reinterpret_cast<const char*>(base + 8);
  if (n < 2 || header[0] != '{') corrupt(path, "header does not start with '{'");

  JsonValue root;
  try {
    root = parse_json(header, size_t(n));
  } catch (const std::exception& e) {
    corrupt(path, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!root.is_object()) corrupt(path, "header is not a JSON object");

  auto st = std::shared_ptr<SafetensorsFile>(new SafetensorsFile());
  st->file_ = file;
  st->data_ = base + 8 + n;
  const uint64_t buffer_size = size - 8 - n;

  for (const auto& kv : root.object) {
    const std::string& name = kv.first;
    const JsonValue& v = kv.second;
    if (name == "__metadata__") {
      if (!v.is_object()) corrupt(path, "__metadata__ is not an object");
      for (const auto& m : v.object) {
        if (!m.second.is_string()) corrupt(path, "__metadata__ value for '" + m.first + "' is not a string");
        st->metadata_[m.first] = m.second.string;
      }
      continue;
    }
    if (!v.is_object()) corrupt(path, "entry is not an object", name);
    const JsonValue* dt = v.get("dtype");
    const JsonValue* shape = v.get("shape");
    const JsonValue* offs = v.get("data_offsets");
    if (!dt || !dt->is_string()) corrupt(path, "missing or non-string dtype", name);
    size_t esize = safetensors_dtype_size(dt->string);
    if (esize == 0) corrupt(path, "unknown dtype '" + dt->string + "'", name);
    if (!shape || !shape->is_array()) corrupt(path, "missing or non-array shape", name);
    if (!offs || !offs->is_array() || offs->array.size() != 2) corrupt(path, "data_offsets must be [begin, end]", name);
    if (v.object.size() != 3) corrupt(path, "unexpected fields besides dtype, shape and data_offsets", name);

    SafetensorsEntry e;
    e.name = name;
    e.dtype = dt->string;
    // numel * esize must equal the byte span; guard every multiplication against overflow.
    unsigned __int128 bytes = esize;
    for (const auto& d : shape->array) {
      if (!d.is_uint() || d.uinteger > (uint64_t(1) << 62)) corrupt(path, "shape holds a non-integer or negative size", name);
      e.shape.push_back(int64_t(d.uinteger));
      bytes *= d.uinteger;
      if (bytes > (unsigned __int128)buffer_size) bytes = (unsigned __int128)buffer_size + 1;  // saturate
    }
    if (!offs->array[0].is_uint() || !offs->array[1].is_uint()) corrupt(path, "data_offsets are not non-negative integers", name);
    e.begin = offs->array[0].uinteger;
    e.end = offs->array[1].uinteger;
    if (e.begin > e.end) corrupt(path, "data_offsets begin > end", name);
    if (e.end > buffer_size) {
      corrupt(path, "data_offsets end " + std::to_string(e.end) + " lies past the data (" + std::to_string(buffer_size) +
                        " bytes; truncated?)",
              name);
    }
    if (bytes != (unsigned __int128)(e.end - e.begin)) {
      corrupt(path, "shape " + shape_str(e.shape) + " x " + e.dtype + " does not match " + std::to_string(e.end - e.begin) +
                        " bytes in data_offsets",
              name);
    }
    st->entries_.push_back(std::move(e));
  }

  // The spec requires the buffer to be entirely indexed, without holes or overlaps.
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : st->entries_) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const SafetensorsEntry* a, const SafetensorsEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  for (const auto* e : by_offset) {
    if (e->begin != cursor) {
      corrupt(path, e->begin < cursor ? "data overlaps the previous tensor" : "hole in the data before this tensor", e->name);
    }
    cursor = e->end;
  }
  if (cursor != buffer_size) {
    corrupt(path, std::to_string(buffer_size - cursor) + " trailing bytes after the last tensor are not indexed");
  }
  std::sort(st->entries_.begin(), st->entries_.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) { return a.name < b.name; });
  return st;
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const SafetensorsEntry& e, const std::string& n) { return e.name < n; });
  return it != entries_.end() && it->name == name ? &*it : nullptr;
}

std::vector<const WeightEntry*> SafetensorsFile::weight_entries() const {
  std::vector<const WeightEntry*> out;
  for (const auto& e : entries_) out.push_back(&e);
  return out;
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  if (!e) throw_error("E_WEIGHTS_MISMATCH", path() + ": no tensor named '" + name + "'", name, path());
  DType dt;
  if (e->dtype == "F32") dt = DType::F32;
  else if (e->dtype == "F16") dt = DType::F16;
  else if (e->dtype == "BF16") dt = DType::BF16;
  else throw_error("E_UNSUPPORTED", path() + ": tensor '" + name + "' has dtype " + e->dtype + ", not a float type", name, path());
  const uint8_t* p = bytes(*e);
  if (reinterpret_cast<uintptr_t>(p) % dtype_size(dt) == 0) {
    return Tensor::borrow(const_cast<uint8_t*>(p), e->shape, dt, file_);
  }
  Tensor t = Tensor::empty(e->shape, dt);
  std::memcpy(t.raw(), p, t.nbytes());
  return t;
}

}  // namespace pia
