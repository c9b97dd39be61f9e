#include "weight_store.h"

#include "../core/errors.h"

namespace pia {

void WeightStore::add_file(std::shared_ptr<WeightFile> file, const std::string& prefix_to_strip) {
  for (const WeightEntry* e : file->weight_entries()) {
    std::string key = e->name;
    if (!prefix_to_strip.empty()) {
      if (key.compare(0, prefix_to_strip.size(), prefix_to_strip) != 0) continue;
      key = key.substr(prefix_to_strip.size());
    }
    if (entries_.count(key)) {
      throw_error("E_WEIGHTS_CORRUPT", label_ + ": key '" + key + "' appears in more than one file", key, file->path());
    }
    entries_[key] = Entry{file, e->name, {}};
  }
}

namespace {

Shape squeezed(const Shape& s) {
  if (s.size() == 4 && s[2] == 1 && s[3] == 1) return {s[0], s[1]};
  return s;
}

}  // namespace

void WeightStore::add_file_mapped(std::shared_ptr<WeightFile> file, const std::vector<KeyAlias>& aliases) {
  for (const auto& a : aliases) {
    if (!file->find(a.file_key)) {
      throw_error("E_WEIGHTS_MISMATCH", label_ + ": key map names '" + a.file_key + "', which the file does not hold", a.key,
                  file->path());
    }
    if (entries_.count(a.key)) {
      throw_error("E_WEIGHTS_CORRUPT", label_ + ": key '" + a.key + "' is mapped twice", a.key, file->path());
    }
    Entry e{file, a.file_key, {}};
    e.squeeze = a.squeeze;
    entries_[a.key] = std::move(e);
  }
}

std::string WeightStore::origin(const std::string& key, const Entry& e) {
  return e.file && e.file_key != key ? " (file key '" + e.file_key + "')" : std::string();
}

Shape WeightStore::entry_shape(const Entry& e) const {
  const Shape s = e.file ? e.file->find(e.file_key)->shape : e.tensor.shape();
  return e.squeeze ? squeezed(s) : s;
}

void WeightStore::put(const std::string& key, Tensor t) { entries_[key] = Entry{nullptr, key, std::move(t)}; }

bool WeightStore::has(const std::string& key) const { return entries_.count(key) != 0; }

Shape WeightStore::shape_of(const std::string& key) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) throw_error("E_WEIGHTS_MISMATCH", label_ + ": missing weight '" + key + "'", key);
  return entry_shape(it->second);
}

Tensor WeightStore::get(const std::string& key, const Shape& expected) {
  auto it = entries_.find(key);
  if (it == entries_.end()) throw_error("E_WEIGHTS_MISMATCH", label_ + ": missing weight '" + key + "'", key);
  Tensor t = it->second.file ? it->second.file->tensor(it->second.file_key) : it->second.tensor;
  if (it->second.squeeze) t = t.reshape(squeezed(t.shape()));
  if (!expected.empty() && t.shape() != expected) {
    throw_error("E_WEIGHTS_MISMATCH",
                label_ + ": weight '" + key + "'" + origin(key, it->second) + " has shape " + shape_str(t.shape()) +
                    ", the network needs " + shape_str(expected),
                key, it->second.file ? it->second.file->path() : std::string());
  }
  used_.insert(key);
  return t;
}

void WeightStore::check_all_used() const {
  for (const auto& kv : entries_) {
    const std::string& key = kv.first;
    if (used_.count(key) || ignored_.count(key)) continue;
    bool skip = false;
    for (const auto& p : ignored_prefixes_) skip = skip || key.compare(0, p.size(), p) == 0;
    if (skip) continue;
    throw_error("E_WEIGHTS_MISMATCH", label_ + ": unexpected weight '" + key + "'" + origin(key, kv.second) + " (not part of this network's configuration)",
                key, kv.second.file ? kv.second.file->path() : std::string());
  }
}

std::vector<std::string> WeightStore::keys() const {
  std::vector<std::string> k;
  for (const auto& kv : entries_) k.push_back(kv.first);
  return k;
}

}  // namespace pia
