#pragma once
// A restricted pickle machine: it understands the opcodes torch.save emits (protocols 2-5) and
// builds a tree of plain values. It never imports or calls anything: every GLOBAL, REDUCE, NEWOBJ,
// BUILD and persistent id goes to the caller's PickleHooks, which decide what a name means (an
// allow-list) and what "calling" it produces (another plain value). Opcodes that could name code
// without going through GLOBAL (INST, OBJ, the extension registry) are refused outright.
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace pia {

enum class PickleKind : uint8_t { None, Bool, Int, BigInt, Float, String, Bytes, List, Tuple, Dict, Global, Storage, Tensor };

struct PickleValue {
  PickleKind kind = PickleKind::None;
  bool boolean = false;
  int64_t integer = 0;         // Int; Storage / Tensor: index into the hooks' tables
  double number = 0;           // Float
  std::string text;            // String, Bytes, Global ("module.name"), BigInt (little-endian two's complement)
  uint64_t text_id = 0;        // String, Bytes: interned id (equal contents, equal ids), for dict keys
  std::vector<PickleValue*> items;  // List, Tuple; Dict: key, value, key, value, ... in insertion order
  // Dict: canonical key -> position of the key in items (allocated for dicts only).
  std::unique_ptr<std::unordered_map<std::string, size_t>> dict_index;

  bool is(PickleKind k) const { return kind == k; }
  size_t dict_size() const { return items.size() / 2; }
  // Dict lookup by string key; nullptr when absent (or not a dict).
  const PickleValue* get(const std::string& key) const;
};

class PickleMachine;

// What the file's names mean. Each hook throws (E_UNSAFE_PICKLE / E_WEIGHTS_CORRUPT) to refuse.
class PickleHooks {
 public:
  virtual ~PickleHooks() = default;
  // GLOBAL / STACK_GLOBAL: a Global value for an allowed name, or throw.
  virtual PickleValue* find_global(PickleMachine& m, const std::string& module, const std::string& name) = 0;
  // REDUCE / NEWOBJ: `callable` is a Global from find_global, `args` a Tuple.
  virtual PickleValue* call(PickleMachine& m, const PickleValue& callable, const PickleValue& args) = 0;
  // BUILD: set `state` on `obj` (returns normally to accept it unchanged).
  virtual void build(PickleMachine& m, PickleValue& obj, const PickleValue& state) = 0;
  // BINPERSID.
  virtual PickleValue* persistent_load(PickleMachine& m, const PickleValue& pid) = 0;
};

class PickleMachine {
 public:
  // `path` names the file in errors; values live as long as the machine.
  PickleMachine(std::string path, PickleHooks& hooks) : path_(std::move(path)), hooks_(hooks) {}
  PickleMachine(const PickleMachine&) = delete;
  PickleMachine& operator=(const PickleMachine&) = delete;

  // Runs one pickle starting at data[pos] up to its STOP; returns the object and sets `pos` past STOP.
  // Malformed input throws E_WEIGHTS_CORRUPT (never reads outside [data, data + size)).
  PickleValue* load(const uint8_t* data, size_t size, size_t& pos);

  PickleValue* make(PickleKind kind);
  PickleValue* make_int(int64_t v);
  // A String (or Bytes) value with its interned id.
  PickleValue* make_string(std::string s, PickleKind kind = PickleKind::String);
  // Adds key -> value to a dict (a key already present is replaced, as in Python).
  void dict_set(PickleValue& dict, PickleValue* key, PickleValue* value);
  [[noreturn]] void corrupt(const std::string& what) const;
  const std::string& path() const { return path_; }
  size_t value_count() const { return values_.size(); }

  // Limits: far above anything torch writes, low enough that a hostile file cannot exhaust memory.
  static constexpr size_t kMaxStack = 1u << 20;
  // ~100 bytes per value: 4M values bound a hostile pickle to ~400 MB; a 1,000-tensor SD checkpoint
  // makes ~20k.
  static constexpr size_t kMaxValues = 1u << 22;

 private:
  std::string path_;
  PickleHooks& hooks_;
  std::deque<PickleValue> values_;  // stable addresses; the tree points into it
  std::unordered_map<std::string, uint64_t> interned_;
  size_t op_offset_ = 0;  // offset of the opcode being run, for messages
};

}  // namespace pia
