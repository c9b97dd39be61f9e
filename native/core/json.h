#pragma once
// A small strict JSON reader for file headers we do not trust (safetensors headers, configs read
// natively). Depth- and size-bounded so a hostile header cannot exhaust the stack.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pia {

class JsonValue {
 public:
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  double number = 0;
  // Integers are kept exactly when the literal is one (offsets beyond 2^53 must not round).
  bool is_integer = false;
  bool negative = false;
  uint64_t uinteger = 0;  // magnitude when is_integer
  std::string string;
  std::vector<JsonValue> array;
  // Insertion order kept; duplicates are rejected by the parser.
  std::vector<std::pair<std::string, JsonValue>> object;

  const JsonValue* get(const std::string& key) const;
  bool is_object() const { return kind == Kind::Object; }
  bool is_array() const { return kind == Kind::Array; }
  bool is_string() const { return kind == Kind::String; }
  bool is_uint() const { return kind == Kind::Number && is_integer && !negative; }
};

// Throws std::runtime_error with a position on malformed input.
JsonValue parse_json(const char* data, size_t size, int max_depth = 64);

}  // namespace pia
