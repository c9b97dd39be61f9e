#include "pickle_reader.h"

#include <cstring>

#include "../core/errors.h"

namespace pia {

namespace {

// Opcode bytes (Python's Lib/pickle.py names).
enum : uint8_t {
  MARK = '(', STOP = '.', POP = '0', POP_MARK = '1', DUP = '2', BININT = 'J', BININT1 = 'K', BININT2 = 'M',
  NONE = 'N', BINPERSID = 'Q', REDUCE = 'R', BINSTRING = 'T', SHORT_BINSTRING = 'U', BINUNICODE = 'X', APPEND = 'a',
  BUILD = 'b', GLOBAL = 'c', DICT = 'd', EMPTY_DICT = '}', APPENDS = 'e', BINGET = 'h', INST = 'i', LONG_BINGET = 'j',
  LIST = 'l', EMPTY_LIST = ']', OBJ = 'o', BINPUT = 'q', LONG_BINPUT = 'r', SETITEM = 's', TUPLE = 't',
  EMPTY_TUPLE = ')', SETITEMS = 'u', BINFLOAT = 'G', BINBYTES = 'B', SHORT_BINBYTES = 'C',
  PROTO = 0x80, NEWOBJ = 0x81, EXT1 = 0x82, EXT2 = 0x83, EXT4 = 0x84, TUPLE1 = 0x85, TUPLE2 = 0x86, TUPLE3 = 0x87,
  NEWTRUE = 0x88, NEWFALSE = 0x89, LONG1 = 0x8a, LONG4 = 0x8b, SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d,
  BINBYTES8 = 0x8e, STACK_GLOBAL = 0x93, MEMOIZE = 0x94, FRAME = 0x95, NEWOBJ_EX = 0x92,
};

// Dict keys by value, as Python hashes them: equal strings / equal ints collide, True == 1.
bool canonical_key(const PickleValue& k, std::string& out) {
  switch (k.kind) {
    case PickleKind::String: out = "s" + std::to_string(k.text_id); return true;
    case PickleKind::Int: out = "i" + std::to_string(k.integer); return true;
    case PickleKind::Bool: out = k.boolean ? "i1" : "i0"; return true;
    case PickleKind::None: out = "n"; return true;
    case PickleKind::Bytes: out = "b" + std::to_string(k.text_id); return true;
    case PickleKind::BigInt: out = "B" + k.text; return true;
    case PickleKind::Float: {
      uint64_t bits;
      std::memcpy(&bits, &k.number, 8);
      out = "f" + std::to_string(bits);
      return true;
    }
    default: return false;  // tuples, tensors, ...: kept without de-duplication
  }
}

}  // namespace

const PickleValue* PickleValue::get(const std::string& key) const {
  if (kind != PickleKind::Dict) return nullptr;
  for (size_t i = 0; i + 1 < items.size(); i += 2) {
    if (items[i]->kind == PickleKind::String && items[i]->text == key) return items[i + 1];
  }
  return nullptr;
}

void PickleMachine::corrupt(const std::string& what) const {
  throw_error("E_WEIGHTS_CORRUPT", path_ + ": pickle: " + what + " (at byte " + std::to_string(op_offset_) + ")", {}, path_);
}

PickleValue* PickleMachine::make(PickleKind kind) {
  if (values_.size() >= kMaxValues) corrupt("more than " + std::to_string(kMaxValues) + " objects");
  values_.emplace_back();
  values_.back().kind = kind;
  return &values_.back();
}

PickleValue* PickleMachine::make_int(int64_t v) {
  PickleValue* p = make(PickleKind::Int);
  p->integer = v;
  return p;
}

PickleValue* PickleMachine::make_string(std::string s, PickleKind kind) {
  PickleValue* p = make(kind);
  // Interned once here (cost bounded by the bytes read), so a dict key compares by id however often
  // a hostile file re-inserts a long key.
  auto it = interned_.emplace(kind == PickleKind::Bytes ? "b" + s : "s" + s, interned_.size()).first;
  p->text_id = it->second;
  p->text = std::move(s);
  return p;
}

void PickleMachine::dict_set(PickleValue& dict, PickleValue* key, PickleValue* value) {
  if (key->kind == PickleKind::List || key->kind == PickleKind::Dict) corrupt("unhashable dict key");
  std::string ck;
  if (canonical_key(*key, ck)) {
    if (!dict.dict_index) dict.dict_index = std::make_unique<std::unordered_map<std::string, size_t>>();
    auto it = dict.dict_index->find(ck);
    if (it != dict.dict_index->end()) {
      dict.items[it->second + 1] = value;
      return;
    }
    dict.dict_index->emplace(std::move(ck), dict.items.size());
  }
  dict.items.push_back(key);
  dict.items.push_back(value);
}

PickleValue* PickleMachine::load(const uint8_t* data, size_t size, size_t& pos) {
  std::vector<PickleValue*> stack;
  std::vector<size_t> marks;
  std::unordered_map<uint64_t, PickleValue*> memo;

  auto need = [&](size_t n) {
    if (n > size - pos) corrupt("truncated (an argument runs past the end of the data)");
  };
  auto uint_le = [&](int n) -> uint64_t {
    need(size_t(n));
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | data[pos + size_t(i)];
    pos += size_t(n);
    return v;
  };
  auto push = [&](PickleValue* v) {
    if (stack.size() >= kMaxStack) corrupt("stack deeper than " + std::to_string(kMaxStack));
    stack.push_back(v);
  };
  auto pop = [&]() -> PickleValue* {
    if (stack.empty() || (!marks.empty() && stack.size() == marks.back())) corrupt("stack underflow");
    PickleValue* v = stack.back();
    stack.pop_back();
    return v;
  };
  auto top = [&]() -> PickleValue* {
    if (stack.empty() || (!marks.empty() && stack.size() == marks.back())) corrupt("stack underflow");
    return stack.back();
  };
  // Items since the last MARK (removed from the stack, mark dropped).
  auto pop_mark = [&]() -> std::vector<PickleValue*> {
    if (marks.empty()) corrupt("no MARK on the stack");
    size_t m = marks.back();
    marks.pop_back();
    std::vector<PickleValue*> items(stack.begin() + std::ptrdiff_t(m), stack.end());
    stack.resize(m);
    return items;
  };
  auto text = [&](size_t n) -> std::string {
    need(n);
    std::string s(reinterpret_cast<const char*>(data + pos), n);
    pos += n;
    return s;
  };
  auto line = [&]() -> std::string {
    const void* nl = std::memchr(data + pos, '\n', size - pos);
    if (!nl) corrupt("GLOBAL name without a newline");
    size_t n = size_t(static_cast<const uint8_t*>(nl) - (data + pos));
    std::string s = text(n);
    ++pos;
    return s;
  };
  auto tuple_of = [&](std::vector<PickleValue*> items) {
    PickleValue* t = make(PickleKind::Tuple);
    t->items = std::move(items);
    return t;
  };
  auto memo_put = [&](uint64_t index) {
    memo[index] = top();
  };
  auto memo_get = [&](uint64_t index) {
    auto it = memo.find(index);
    if (it == memo.end()) corrupt("memo slot " + std::to_string(index) + " read before it was written");
    push(it->second);
  };
  auto append_to = [&](PickleValue* list, const std::vector<PickleValue*>& items) {
    if (list->kind != PickleKind::List) corrupt("APPEND to something that is not a list");
    list->items.insert(list->items.end(), items.begin(), items.end());
  };
  auto set_items = [&](PickleValue* dict, const std::vector<PickleValue*>& kv) {
    if (dict->kind != PickleKind::Dict) corrupt("SETITEM on something that is not a dict");
    if (kv.size() % 2) corrupt("SETITEMS with an odd number of items");
    for (size_t i = 0; i < kv.size(); i += 2) dict_set(*dict, kv[i], kv[i + 1]);
  };
  auto signed_le = [&](const std::string& bytes) -> PickleValue* {
    // LONG1/LONG4: little-endian two's complement; more than 8 bytes stays raw (torch's legacy magic number).
    if (bytes.size() > 8) {
      PickleValue* v = make(PickleKind::BigInt);
      v->text = bytes;
      return v;
    }
    uint64_t u = 0;
    for (size_t i = bytes.size(); i-- > 0;) u = (u << 8) | uint8_t(bytes[i]);
    if (!bytes.empty() && bytes.size() < 8 && (uint8_t(bytes.back()) & 0x80)) u |= ~uint64_t(0) << (8 * bytes.size());
    return make_int(int64_t(u));
  };

  if (pos > size) corrupt("no data");
  for (;;) {
    op_offset_ = pos;
    if (pos >= size) corrupt("truncated (no STOP opcode)");
    const uint8_t op = data[pos++];
    switch (op) {
      case PROTO: {
        uint64_t v = uint_le(1);
        if (v > 5) corrupt("pickle protocol " + std::to_string(v) + " is newer than 5");
        break;
      }
      case FRAME: {
        uint64_t n = uint_le(8);
        if (n > size - pos) corrupt("FRAME runs past the end of the data");
        break;
      }
      case STOP: {
        if (!marks.empty()) corrupt("STOP with an open MARK");
        return pop();
      }
      case MARK:
        if (marks.size() >= kMaxStack) corrupt("too many MARKs");
        marks.push_back(stack.size());
        break;
      case POP: pop(); break;
      case POP_MARK: pop_mark(); break;
      case DUP: push(top()); break;
      case NONE: push(make(PickleKind::None)); break;
      case NEWTRUE:
      case NEWFALSE: {
        PickleValue* v = make(PickleKind::Bool);
        v->boolean = op == NEWTRUE;
        push(v);
        break;
      }
      case BININT: push(make_int(int64_t(int32_t(uint32_t(uint_le(4)))))); break;
      case BININT1: push(make_int(int64_t(uint_le(1)))); break;
      case BININT2: push(make_int(int64_t(uint_le(2)))); break;
      case LONG1: push(signed_le(text(size_t(uint_le(1))))); break;
      case LONG4: {
        uint64_t n = uint_le(4);
        if (n > 64) corrupt("LONG4 integer of " + std::to_string(n) + " bytes");
        push(signed_le(text(size_t(n))));
        break;
      }
      case BINFLOAT: {
        need(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | data[pos + size_t(i)];  // big-endian
        pos += 8;
        PickleValue* v = make(PickleKind::Float);
        std::memcpy(&v->number, &bits, 8);
        push(v);
        break;
      }
      case SHORT_BINUNICODE: push(make_string(text(size_t(uint_le(1))))); break;
      case BINUNICODE: push(make_string(text(size_t(uint_le(4))))); break;
      case BINUNICODE8: {
        uint64_t n = uint_le(8);
        need(n > size ? size + 1 : size_t(n));
        push(make_string(text(size_t(n))));
        break;
      }
      // Python 2 str: torch reads them as text (its _maybe_decode_ascii).
      case SHORT_BINSTRING: push(make_string(text(size_t(uint_le(1))))); break;
      case BINSTRING: {
        int64_t n = int32_t(uint32_t(uint_le(4)));
        if (n < 0) corrupt("BINSTRING with a negative length");
        push(make_string(text(size_t(n))));
        break;
      }
      case SHORT_BINBYTES:
      case BINBYTES:
      case BINBYTES8: {
        uint64_t n = uint_le(op == SHORT_BINBYTES ? 1 : op == BINBYTES ? 4 : 8);
        need(n > size ? size + 1 : size_t(n));
        push(make_string(text(size_t(n)), PickleKind::Bytes));
        break;
      }
      case EMPTY_DICT: push(make(PickleKind::Dict)); break;
      case EMPTY_LIST: push(make(PickleKind::List)); break;
      case EMPTY_TUPLE: push(make(PickleKind::Tuple)); break;
      case DICT: {
        PickleValue* d = make(PickleKind::Dict);
        set_items(d, pop_mark());
        push(d);
        break;
      }
      case LIST: {
        PickleValue* l = make(PickleKind::List);
        l->items = pop_mark();
        push(l);
        break;
      }
      case TUPLE: push(tuple_of(pop_mark())); break;
      case TUPLE1:
      case TUPLE2:
      case TUPLE3: {
        size_t n = size_t(op - TUPLE1 + 1);
        std::vector<PickleValue*> items(n);
        for (size_t i = n; i-- > 0;) items[i] = pop();
        push(tuple_of(std::move(items)));
        break;
      }
      case APPEND: {
        PickleValue* v = pop();
        append_to(top(), {v});
        break;
      }
      case APPENDS: {
        auto items = pop_mark();
        append_to(top(), items);
        break;
      }
      case SETITEM: {
        PickleValue* v = pop();
        PickleValue* k = pop();
        set_items(top(), {k, v});
        break;
      }
      case SETITEMS: {
        auto kv = pop_mark();
        set_items(top(), kv);
        break;
      }
      case BINPUT: memo_put(uint_le(1)); break;
      case LONG_BINPUT: memo_put(uint_le(4)); break;
      case MEMOIZE: memo_put(memo.size()); break;
      case BINGET: memo_get(uint_le(1)); break;
      case LONG_BINGET: memo_get(uint_le(4)); break;
      case GLOBAL: {
        std::string module = line();
        std::string name = line();
        push(hooks_.find_global(*this, module, name));
        break;
      }
      case STACK_GLOBAL: {
        PickleValue* name = pop();
        PickleValue* module = pop();
        if (!module->is(PickleKind::String) || !name->is(PickleKind::String)) corrupt("STACK_GLOBAL of non-strings");
        push(hooks_.find_global(*this, module->text, name->text));
        break;
      }
      case REDUCE:
      case NEWOBJ: {
        PickleValue* args = pop();
        PickleValue* callable = pop();
        if (!callable->is(PickleKind::Global)) corrupt("REDUCE/NEWOBJ of something that is not a global");
        if (!args->is(PickleKind::Tuple)) corrupt("REDUCE/NEWOBJ arguments are not a tuple");
        push(hooks_.call(*this, *callable, *args));
        break;
      }
      case NEWOBJ_EX: {
        PickleValue* kwargs = pop();
        PickleValue* args = pop();
        PickleValue* callable = pop();
        if (!callable->is(PickleKind::Global)) corrupt("NEWOBJ_EX of something that is not a global");
        if (!args->is(PickleKind::Tuple) || !kwargs->is(PickleKind::Dict) || kwargs->dict_size() != 0) {
          corrupt("NEWOBJ_EX with keyword arguments");
        }
        push(hooks_.call(*this, *callable, *args));
        break;
      }
      case BUILD: {
        PickleValue* state = pop();
        hooks_.build(*this, *top(), *state);
        break;
      }
      case BINPERSID: {
        PickleValue* pid = pop();
        push(hooks_.persistent_load(*this, *pid));
        break;
      }
      case INST:
      case OBJ:
      case EXT1:
      case EXT2:
      case EXT4:
        throw_error("E_UNSAFE_PICKLE",
                    path_ + ": pickle: refuses opcode 0x" + "0123456789abcdef"[op >> 4] + "0123456789abcdef"[op & 15] +
                        " (instantiates a class by name outside the allow-list; nothing was executed)",
                    {}, path_);
      default: {
        static const char* hex = "0123456789abcdef";
        corrupt(std::string("unknown or unsupported opcode 0x") + hex[op >> 4] + hex[op & 15]);
      }
    }
  }
}

}  // namespace pia
