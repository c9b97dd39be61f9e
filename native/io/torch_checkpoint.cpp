#include "torch_checkpoint.h"

#include <algorithm>
#include <cstring>

#include "../core/errors.h"
#include "safetensors.h"
#include "zip_reader.h"

namespace pia {

namespace {

// torch/serialization.py: MAGIC_NUMBER = 0x1950a86a20f9469cfc6c, pickled as a 10-byte LONG1.
const uint8_t kLegacyMagic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
constexpr int64_t kLegacyProtocolVersion = 1001;

// What an allowed global is for; the Global value's `integer` holds it.
enum Role : int64_t {
  kOrderedDict = 1,
  kRebuildTensorV2,
  kRebuildTensor,
  kRebuildParameter,
  kRebuildParameterWithState,
  kRebuildFromTypeV2,
  kTensorType,
  kSize,
  kStorageType,  // + index into kStorageTypes
};

struct StorageType {
  const char* name;
  const char* dtype;
};
// torch's legacy typed storage classes, by which torch.save names a storage's dtype.
const StorageType kStorageTypes[] = {
    {"torch.FloatStorage", "F32"}, {"torch.HalfStorage", "F16"},  {"torch.BFloat16Storage", "BF16"},
    {"torch.DoubleStorage", "F64"}, {"torch.LongStorage", "I64"},  {"torch.IntStorage", "I32"},
    {"torch.ShortStorage", "I16"},  {"torch.CharStorage", "I8"},   {"torch.ByteStorage", "U8"},
    {"torch.BoolStorage", "BOOL"},
};

std::string printable(const std::string& s) {
  std::string out;
  for (char c : s.substr(0, 200)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return s.size() > 200 ? out + "..." : out;
}

const char* kind_name(PickleKind k) {
  switch (k) {
    case PickleKind::None: return "None";
    case PickleKind::Bool: return "bool";
    case PickleKind::Int: case PickleKind::BigInt: return "int";
    case PickleKind::Float: return "float";
    case PickleKind::String: return "str";
    case PickleKind::Bytes: return "bytes";
    case PickleKind::List: return "list";
    case PickleKind::Tuple: return "tuple";
    case PickleKind::Dict: return "dict";
    case PickleKind::Global: return "global";
    case PickleKind::Storage: return "storage";
    case PickleKind::Tensor: return "tensor";
  }
  return "?";
}

}  // namespace

class TorchPickleHooks : public PickleHooks {
 public:
  explicit TorchPickleHooks(TorchCheckpoint& ck) : ck_(ck) {}
  ZipReader* zip = nullptr;
  std::string prefix;  // "<archive>/" of the zip format
  bool legacy = false;
  bool bare = false;  // a pickle without torch's framing: read only to refuse what it names

  PickleValue* find_global(PickleMachine& m, const std::string& module, const std::string& name) override {
    const std::string full = module + "." + name;
    int64_t role = 0;
    static const std::pair<const char*, Role> kCallables[] = {
        {"collections.OrderedDict", kOrderedDict},
        {"torch._utils._rebuild_tensor_v2", kRebuildTensorV2},
        {"torch._utils._rebuild_tensor", kRebuildTensor},
        {"torch._utils._rebuild_parameter", kRebuildParameter},
        {"torch._utils._rebuild_parameter_with_state", kRebuildParameterWithState},
        {"torch._utils._rebuild_from_type_v2", kRebuildFromTypeV2},
        {"torch._tensor.Tensor", kTensorType},
        {"torch.Tensor", kTensorType},
        {"torch.nn.parameter.Parameter", kTensorType},
        {"torch.Size", kSize},
    };
    for (const auto& c : kCallables) {
      if (full == c.first) role = c.second;
    }
    for (size_t i = 0; i < sizeof(kStorageTypes) / sizeof(kStorageTypes[0]); ++i) {
      if (full == kStorageTypes[i].name) role = kStorageType + int64_t(i);
    }
    if (role == 0) {
      throw_error("E_UNSAFE_PICKLE",
                  m.path() + ": refuses global '" + printable(full) +
                      "' in the pickle: only the names torch.save uses to rebuild tensors are allowed (nothing was executed)",
                  printable(full), m.path());
    }
    PickleValue* g = m.make(PickleKind::Global);
    g->text = full;
    g->integer = role;
    return g;
  }

  PickleValue* call(PickleMachine& m, const PickleValue& callable, const PickleValue& args) override {
    const auto& a = args.items;
    auto arity = [&](size_t lo, size_t hi) {
      if (a.size() < lo || a.size() > hi) {
        m.corrupt("'" + callable.text + "' called with " + std::to_string(a.size()) + " arguments");
      }
    };
    switch (callable.integer) {
      case kOrderedDict: {
        arity(0, 1);
        PickleValue* d = m.make(PickleKind::Dict);
        if (a.size() == 1) {
          if (!a[0]->is(PickleKind::List) && !a[0]->is(PickleKind::Tuple)) m.corrupt("OrderedDict of a non-sequence");
          for (PickleValue* kv : a[0]->items) {
            if ((!kv->is(PickleKind::Tuple) && !kv->is(PickleKind::List)) || kv->items.size() != 2) {
              m.corrupt("OrderedDict item is not a pair");
            }
            m.dict_set(*d, kv->items[0], kv->items[1]);
          }
        }
        return d;
      }
      case kSize: {
        arity(0, 1);
        PickleValue* t = m.make(PickleKind::Tuple);
        if (a.size() == 1) {
          if (!a[0]->is(PickleKind::Tuple) && !a[0]->is(PickleKind::List)) m.corrupt("torch.Size of a non-sequence");
          t->items = a[0]->items;
        }
        return t;
      }
      case kRebuildTensorV2:  // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        arity(6, 7);
        return rebuild_tensor(m, a, true);
      case kRebuildTensor:  // (storage, storage_offset, size, stride)
        arity(4, 4);
        return rebuild_tensor(m, a, false);
      case kRebuildParameter:           // (data, requires_grad, backward_hooks)
      case kRebuildParameterWithState:  // (data, requires_grad, backward_hooks, state)
        arity(callable.integer == kRebuildParameter ? 3 : 4, callable.integer == kRebuildParameter ? 3 : 4);
        if (!a[0]->is(PickleKind::Tensor)) m.corrupt("_rebuild_parameter of a " + std::string(kind_name(a[0]->kind)));
        if (a[1]->is(PickleKind::Bool)) ck_.tensors_[size_t(a[0]->integer)].requires_grad = a[1]->boolean;
        return a[0];
      case kRebuildFromTypeV2: {  // (func, new_type, args, state): Tensor.__reduce_ex__ with Python state
        arity(4, 4);
        const PickleValue& func = *a[0];
        if (!func.is(PickleKind::Global) || func.integer == kRebuildFromTypeV2 ||
            (func.integer != kRebuildTensorV2 && func.integer != kRebuildTensor && func.integer != kRebuildParameter &&
             func.integer != kRebuildParameterWithState)) {
          m.corrupt("_rebuild_from_type_v2 of something that does not rebuild a tensor");
        }
        if (!a[1]->is(PickleKind::Global) || a[1]->integer != kTensorType) m.corrupt("_rebuild_from_type_v2 to a non-tensor type");
        if (!a[2]->is(PickleKind::Tuple)) m.corrupt("_rebuild_from_type_v2 arguments are not a tuple");
        return call(m, func, *a[2]);
      }
      default:
        m.corrupt("'" + callable.text + "' is not callable");
    }
  }

  void build(PickleMachine& m, PickleValue& obj, const PickleValue& state) override {
    // OrderedDict state (a state dict's `_metadata` attribute) and tensor/parameter state carry no
    // weights: accepted and dropped.
    if (obj.is(PickleKind::Dict) || obj.is(PickleKind::Tensor)) return;
    (void)state;
    m.corrupt(std::string("BUILD on a ") + kind_name(obj.kind));
  }

  PickleValue* persistent_load(PickleMachine& m, const PickleValue& pid) override {
    // zip:    ('storage', storage_type, key, location, numel)
    // legacy: ('storage', storage_type, root_key, location, numel, view_metadata)
    if (!pid.is(PickleKind::Tuple) || pid.items.empty() || !pid.items[0]->is(PickleKind::String)) {
      m.corrupt("persistent id is not a ('storage', ...) tuple");
    }
    const auto& a = pid.items;
    if (a[0]->text != "storage") {
      throw_error("E_UNSUPPORTED",
                  m.path() + ": persistent id '" + printable(a[0]->text) +
                      "' (a pickled module, not a state dict) is not supported",
                  {}, m.path());
    }
    if (a.size() != (legacy ? 6u : 5u) && !(bare && (a.size() == 5 || a.size() == 6))) m.corrupt("storage persistent id has " + std::to_string(a.size()) + " fields");
    if (!a[1]->is(PickleKind::Global) || a[1]->integer < kStorageType) m.corrupt("storage type is not a torch storage class");
    const StorageType& type = kStorageTypes[a[1]->integer - kStorageType];
    const std::string key = key_text(m, *a[2]);
    if (!a[3]->is(PickleKind::String)) m.corrupt("storage location is not a string");
    if (!a[4]->is(PickleKind::Int) || a[4]->integer < 0) m.corrupt("storage size is not a non-negative integer");
    const uint64_t numel = uint64_t(a[4]->integer);
    size_t root = storage(m, key, type, numel);
    size_t index = root;
    if (a.size() == 6 && !a[5]->is(PickleKind::None)) {
      // view_metadata = (view_key, offset, view_size): a slice of the root storage, in elements.
      const PickleValue& v = *a[5];
      if (!v.is(PickleKind::Tuple) || v.items.size() != 3 || !v.items[1]->is(PickleKind::Int) ||
          !v.items[2]->is(PickleKind::Int) || v.items[1]->integer < 0 || v.items[2]->integer < 0) {
        m.corrupt("bad storage view metadata");
      }
      const std::string view_key = key_text(m, *v.items[0]);
      auto it = ck_.storage_by_key_.find(view_key);
      if (it == ck_.storage_by_key_.end()) {
        index = storage(m, view_key, type, uint64_t(v.items[2]->integer));
        views_.push_back({index, root, uint64_t(v.items[1]->integer)});
      } else {
        index = it->second;
      }
    }
    PickleValue* s = m.make(PickleKind::Storage);
    s->integer = int64_t(index);
    return s;
  }

  struct View {
    size_t view, root;
    uint64_t offset;
  };
  std::vector<View> views_;

 private:
  static std::string key_text(PickleMachine& m, const PickleValue& k) {
    if (k.is(PickleKind::String)) return k.text;
    if (k.is(PickleKind::Int)) return std::to_string(k.integer);
    m.corrupt("storage key is not a string");
  }

  // The storage table entry for `key` (created on first use; torch keeps the first one it loads).
  size_t storage(PickleMachine& m, const std::string& key, const StorageType& type, uint64_t numel) {
    auto it = ck_.storage_by_key_.find(key);
    if (it != ck_.storage_by_key_.end()) {
      const TorchStorage& s = ck_.storages_[it->second];
      if (s.dtype != type.dtype || s.numel != numel) m.corrupt("storage '" + printable(key) + "' is described twice differently");
      return it->second;
    }
    TorchStorage s;
    s.key = key;
    s.dtype = type.dtype;
    s.element_size = safetensors_dtype_size(type.dtype);
    s.numel = numel;
    if (numel > ck_.file_->size()) m.corrupt("storage '" + printable(key) + "' is larger than the file");
    if (zip) {
      const std::string record = prefix + "data/" + key;
      const ZipEntry* e = zip->find(record);
      if (!e) m.corrupt("storage record '" + printable(record) + "' is missing from the archive");
      if (e->size < numel * s.element_size) {
        m.corrupt("storage record '" + printable(record) + "' holds " + std::to_string(e->size) + " bytes, " +
                  std::to_string(numel * s.element_size) + " needed");
      }
      s.data = zip->data(*e);
    }
    ck_.storages_.push_back(s);
    ck_.storage_by_key_[key] = ck_.storages_.size() - 1;
    return ck_.storages_.size() - 1;
  }

  PickleValue* rebuild_tensor(PickleMachine& m, const std::vector<PickleValue*>& a, bool v2) {
    if (!a[0]->is(PickleKind::Storage)) m.corrupt("tensor storage is a " + std::string(kind_name(a[0]->kind)));
    if (!a[1]->is(PickleKind::Int) || a[1]->integer < 0) m.corrupt("tensor storage offset is not a non-negative integer");
    auto dims = [&](const PickleValue& v, const char* what) {
      if (!v.is(PickleKind::Tuple) && !v.is(PickleKind::List)) m.corrupt(std::string("tensor ") + what + " is not a tuple");
      if (v.items.size() > 64) m.corrupt(std::string("tensor ") + what + " has more than 64 dimensions");
      Shape s;
      for (const PickleValue* d : v.items) {
        if (!d->is(PickleKind::Int) || d->integer < 0) m.corrupt(std::string("tensor ") + what + " holds a non-integer or negative value");
        s.push_back(d->integer);
      }
      return s;
    };
    TorchTensor t;
    t.storage = size_t(a[0]->integer);
    t.dtype = ck_.storages_[t.storage].dtype;
    t.offset = uint64_t(a[1]->integer);
    t.shape = dims(*a[2], "size");
    t.strides = dims(*a[3], "stride");
    if (t.shape.size() != t.strides.size()) m.corrupt("tensor size and stride differ in length");
    if (v2 && a[4]->is(PickleKind::Bool)) t.requires_grad = a[4]->boolean;
    ck_.tensors_.push_back(std::move(t));
    PickleValue* v = m.make(PickleKind::Tensor);
    v->integer = int64_t(ck_.tensors_.size() - 1);
    return v;
  }

  TorchCheckpoint& ck_;
};

TorchCheckpoint::~TorchCheckpoint() = default;

bool TorchCheckpoint::looks_like_legacy(const uint8_t* data, size_t size) {
  if (size < 3 || data[0] != 0x80 || data[1] < 2 || data[1] > 5) return false;
  size_t p = 2;
  if (data[p] == 0x95) p += 9;  // FRAME (protocol 4+)
  return p + 2 + sizeof(kLegacyMagic) <= size && data[p] == 0x8a && data[p + 1] == sizeof(kLegacyMagic) &&
         std::memcmp(data + p + 2, kLegacyMagic, sizeof(kLegacyMagic)) == 0;
}

std::shared_ptr<TorchCheckpoint> TorchCheckpoint::open(const std::string& path) { return parse(MappedFile::open(path)); }

std::shared_ptr<TorchCheckpoint> TorchCheckpoint::parse(std::shared_ptr<MappedFile> file) {
  auto ck = std::shared_ptr<TorchCheckpoint>(new TorchCheckpoint());
  ck->file_ = std::move(file);
  ck->hooks_ = std::make_unique<TorchPickleHooks>(*ck);
  ck->machine_ = std::make_unique<PickleMachine>(ck->file_->path(), *ck->hooks_);
  const uint8_t* d = ck->file_->data();
  const size_t n = ck->file_->size();
  if (ZipReader::looks_like_zip(d, n)) {
    ck->parse_zip();
  } else if (n >= 2 && d[0] == 0x80) {
    ck->parse_legacy();
  } else {
    throw_error("E_WEIGHTS_CORRUPT", ck->path() + ": not a PyTorch checkpoint (neither a torch.save zip nor a pickle)", {},
                ck->path());
  }
  ck->validate_tensors();
  return ck;
}

void TorchCheckpoint::parse_zip() {
  ZipReader zip(file_);
  // PyTorchStreamReader: every record lives under one folder, named after the first entry's.
  std::string prefix;
  if (!zip.entries().empty()) {
    const std::string& first = zip.entries()[0].name;
    size_t slash = first.find('/');
    if (slash != std::string::npos) prefix = first.substr(0, slash + 1);
  }
  const ZipEntry* pkl = zip.find(prefix + "data.pkl");
  if (!pkl) {
    if (zip.find(prefix + "constants.pkl")) {
      throw_error("E_UNSUPPORTED", path() + ": a TorchScript archive (torch.jit.save), not a torch.save checkpoint", {}, path());
    }
    throw_error("E_WEIGHTS_CORRUPT", path() + ": zip archive without '" + printable(prefix) + "data.pkl' (not a torch checkpoint)",
                {}, path());
  }
  if (const ZipEntry* bo = zip.find(prefix + "byteorder")) {
    std::string order(reinterpret_cast<const char*>(zip.data(*bo)), size_t(std::min<uint64_t>(bo->size, 16)));
    if (order != "little") {
      throw_error("E_UNSUPPORTED", path() + ": byte order '" + printable(order) + "' (only little-endian checkpoints are read)",
                  {}, path());
    }
  }
  hooks_->zip = &zip;
  hooks_->prefix = prefix;
  size_t pos = 0;
  root_ = machine_->load(zip.data(*pkl), size_t(pkl->size), pos);
  hooks_->zip = nullptr;
}

void TorchCheckpoint::parse_legacy() {
  const uint8_t* d = file_->data();
  const size_t n = file_->size();
  size_t pos = 0;
  auto bad = [&](const std::string& what) { throw_error("E_WEIGHTS_CORRUPT", path() + ": legacy torch file: " + what, {}, path()); };
  if (!looks_like_legacy(d, n)) {
    // torch.load would unpickle this whole stream looking for its magic number (running whatever it
    // names); we read it only to name a refused global, then reject the file.
    hooks_->bare = true;
    machine_->load(d, n, pos);
    throw_error("E_WEIGHTS_CORRUPT", path() + ": a bare pickle, not a torch.save checkpoint (no torch magic number)", {}, path());
  }
  hooks_->legacy = true;
  const PickleValue* magic = machine_->load(d, n, pos);
  if (!magic->is(PickleKind::BigInt) || magic->text != std::string(reinterpret_cast<const char*>(kLegacyMagic), 10)) {
    bad("invalid magic number (not a torch.save file)");
  }
  const PickleValue* version = machine_->load(d, n, pos);
  if (!version->is(PickleKind::Int) || version->integer != kLegacyProtocolVersion) bad("unknown protocol version");
  const PickleValue* sys_info = machine_->load(d, n, pos);
  if (!sys_info->is(PickleKind::Dict)) bad("system info is not a dict");
  if (const PickleValue* little = sys_info->get("little_endian")) {
    if (!little->is(PickleKind::Bool) || !little->boolean) {
      throw_error("E_UNSUPPORTED", path() + ": big-endian checkpoint (only little-endian checkpoints are read)", {}, path());
    }
  }
  root_ = machine_->load(d, n, pos);
  const PickleValue* keys = machine_->load(d, n, pos);
  if (!keys->is(PickleKind::List)) bad("storage key list is not a list");
  // Then each storage in key order: an int64 element count and the raw bytes (_set_from_file).
  std::vector<bool> seen(storages_.size(), false);
  for (const PickleValue* k : keys->items) {
    if (!k->is(PickleKind::String) && !k->is(PickleKind::Int)) bad("storage key is not a string");
    const std::string key = k->is(PickleKind::String) ? k->text : std::to_string(k->integer);
    auto it = storage_by_key_.find(key);
    if (it == storage_by_key_.end()) bad("storage '" + printable(key) + "' is listed but no tensor uses it");
    TorchStorage& s = storages_[it->second];
    if (seen[it->second]) bad("storage '" + printable(key) + "' is listed twice");
    seen[it->second] = true;
    if (n - pos < 8) bad("truncated before the size of storage '" + printable(key) + "'");
    uint64_t count = 0;
    for (int i = 7; i >= 0; --i) count = (count << 8) | d[pos + size_t(i)];
    pos += 8;
    if (count != s.numel) bad("storage '" + printable(key) + "' holds " + std::to_string(count) + " elements, " +
                              std::to_string(s.numel) + " expected");
    if (s.numel > (n - pos) / s.element_size) bad("storage '" + printable(key) + "' runs past the end of the file (truncated?)");
    s.data = d + pos;
    pos += s.numel * s.element_size;
  }
  for (const auto& v : hooks_->views_) {
    TorchStorage& view = storages_[v.view];
    const TorchStorage& root = storages_[v.root];
    if (!root.data) continue;  // reported below as a storage without data
    if (v.offset > root.numel || view.numel > root.numel - v.offset) bad("storage view '" + printable(view.key) + "' exceeds its storage");
    view.data = root.data + v.offset * root.element_size;
  }
}

void TorchCheckpoint::validate_tensors() {
  for (const TorchTensor& t : tensors_) {
    const TorchStorage& s = storages_[t.storage];
    auto bad = [&](const std::string& what) {
      throw_error("E_WEIGHTS_CORRUPT", path() + ": tensor of storage '" + printable(s.key) + "': " + what, {}, path());
    };
    if (!s.data) bad("the storage's bytes are missing from the file");
    unsigned __int128 numel = 1, last = t.offset;
    for (size_t i = 0; i < t.shape.size(); ++i) {
      numel *= uint64_t(t.shape[i]);
      if (numel > (unsigned __int128)1 << 62) numel = (unsigned __int128)1 << 62;  // saturate, reported below
      if (t.shape[i] > 0) last += (unsigned __int128)uint64_t(t.shape[i] - 1) * uint64_t(t.strides[i]);
    }
    if (numel > 0 && last >= s.numel) {
      bad("offset " + std::to_string(t.offset) + ", size " + shape_str(t.shape) + " and stride " + shape_str(t.strides) +
          " reach past the storage's " + std::to_string(s.numel) + " elements");
    }
    // A stride-0 (expanded) tensor can describe far more elements than its storage holds: bound
    // what copying it could allocate.
    if (numel * s.element_size > (unsigned __int128)file_->size() + (256u << 20)) {
      bad("size " + shape_str(t.shape) + " is far larger than the file");
    }
  }
}

const TorchTensor& TorchCheckpoint::tensor_of(const PickleValue& v) const {
  if (!v.is(PickleKind::Tensor)) throw_error("E_INVALID_ARGUMENT", path() + ": value is not a tensor", {}, path());
  return tensors_.at(size_t(v.integer));
}

size_t TorchCheckpoint::byte_size(const TorchTensor& t) const {
  return size_t(shape_numel(t.shape)) * storages_[t.storage].element_size;
}

void TorchCheckpoint::copy_bytes(const TorchTensor& t, uint8_t* dst) const {
  const TorchStorage& s = storages_[t.storage];
  const size_t es = s.element_size;
  const int64_t numel = shape_numel(t.shape);
  if (numel == 0) return;
  const uint8_t* base = s.data + t.offset * es;
  const size_t nd = t.shape.size();
  if (nd == 0) {
    std::memcpy(dst, base, es);
    return;
  }
  // Odometer over all but the last dimension; the last one is a memcpy when its stride is 1.
  const int64_t inner = t.shape[nd - 1], inner_stride = t.strides[nd - 1];
  std::vector<int64_t> idx(nd - 1, 0);
  for (int64_t done = 0; done < numel; done += inner) {
    int64_t off = 0;
    for (size_t i = 0; i + 1 < nd; ++i) off += idx[i] * t.strides[i];
    const uint8_t* src = base + size_t(off) * es;
    if (inner_stride == 1) {
      std::memcpy(dst, src, size_t(inner) * es);
      dst += size_t(inner) * es;
    } else {
      for (int64_t j = 0; j < inner; ++j, dst += es) std::memcpy(dst, src + size_t(j * inner_stride) * es, es);
    }
    for (size_t i = nd - 1; i-- > 0;) {
      if (++idx[i] < t.shape[i]) break;
      idx[i] = 0;
    }
  }
}

Tensor TorchCheckpoint::to_tensor(const TorchTensor& t, const std::string& name) const {
  const TorchStorage& s = storages_[t.storage];
  DType dt;
  if (t.dtype == "F32" || t.dtype == "F64") dt = DType::F32;
  else if (t.dtype == "F16") dt = DType::F16;
  else if (t.dtype == "BF16") dt = DType::BF16;
  else throw_error("E_UNSUPPORTED", path() + ": tensor '" + name + "' has dtype " + t.dtype + ", not a float type", name, path());
  if (t.dtype == "F64") {
    std::vector<uint8_t> raw(byte_size(t));
    copy_bytes(t, raw.data());
    Tensor out = Tensor::empty(t.shape, DType::F32);
    float* o = out.data<float>();
    for (size_t i = 0; i < raw.size() / 8; ++i) {
      double v;
      std::memcpy(&v, raw.data() + i * 8, 8);
      o[i] = float(v);
    }
    return out;
  }
  bool dense = true;
  const Shape want = contiguous_strides(t.shape);
  for (size_t i = 0; i < t.shape.size(); ++i) dense = dense && (t.shape[i] <= 1 || t.strides[i] == want[i]);
  const uint8_t* p = s.data + t.offset * s.element_size;
  if (dense && reinterpret_cast<uintptr_t>(p) % s.element_size == 0) {
    return Tensor::borrow(const_cast<uint8_t*>(p), t.shape, dt, file_);
  }
  Tensor out = Tensor::empty(t.shape, dt);
  copy_bytes(t, static_cast<uint8_t*>(out.raw()));
  return out;
}

const PickleValue* TorchCheckpoint::dict_at(const std::vector<std::string>& keys) const {
  const PickleValue* v = root_;
  for (const auto& k : keys) {
    v = v->get(k);
    if (!v) return nullptr;
  }
  return v->is(PickleKind::Dict) ? v : nullptr;
}

TorchStateDict::TorchStateDict(std::shared_ptr<TorchCheckpoint> ckpt, const std::vector<std::string>& keys)
    : ckpt_(std::move(ckpt)) {
  const PickleValue* d = ckpt_->dict_at(keys);
  if (!d) {
    std::string where;
    for (const auto& k : keys) where += "['" + printable(k) + "']";
    throw_error("E_UNSUPPORTED",
                path() + ": the checkpoint " + (keys.empty() ? "holds a " + std::string(kind_name(ckpt_->root().kind)) : "has no dict at " + where) +
                    ", not a dict of tensors",
                {}, path());
  }
  std::vector<std::pair<std::string, size_t>> found;
  for (size_t i = 0; i + 1 < d->items.size(); i += 2) {
    if (d->items[i]->is(PickleKind::String) && d->items[i + 1]->is(PickleKind::Tensor)) {
      found.emplace_back(d->items[i]->text, size_t(d->items[i + 1]->integer));
    }
  }
  std::sort(found.begin(), found.end());
  for (const auto& f : found) {
    const TorchTensor& t = ckpt_->tensors()[f.second];
    entries_.push_back(WeightEntry{f.first, t.dtype, t.shape});
    tensor_index_.push_back(f.second);
  }
}

std::vector<const WeightEntry*> TorchStateDict::weight_entries() const {
  std::vector<const WeightEntry*> out;
  for (const auto& e : entries_) out.push_back(&e);
  return out;
}

const WeightEntry* TorchStateDict::find(const std::string& name) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const WeightEntry& e, const std::string& n) { return e.name < n; });
  return it != entries_.end() && it->name == name ? &*it : nullptr;
}

const TorchTensor& TorchStateDict::torch_tensor(const std::string& name) const {
  const WeightEntry* e = find(name);
  if (!e) throw_error("E_WEIGHTS_MISMATCH", path() + ": no tensor named '" + name + "'", name, path());
  return ckpt_->tensors()[tensor_index_[size_t(e - entries_.data())]];
}

Tensor TorchStateDict::tensor(const std::string& name) const { return ckpt_->to_tensor(torch_tensor(name), name); }

}  // namespace pia
