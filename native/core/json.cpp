#include "json.h"

#include <cmath>
#include <cstdlib>
#include <stdexcept>

namespace pia {

const JsonValue* JsonValue::get(const std::string& key) const {
  for (const auto& kv : object) {
    if (kv.first == key) return &kv.second;
  }
  return nullptr;
}

namespace {

class Parser {
 public:
  Parser(const char* d, size_t n, int max_depth) : p_(d), begin_(d), end_(d + n), max_depth_(max_depth) {}

  JsonValue parse_document() {
    skip_ws();
    JsonValue v = parse_value(0);
    skip_ws();
    if (p_ != end_) fail("trailing characters after JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error("invalid JSON at byte " + std::to_string(p_ - begin_) + ": " + what);
  }
  void skip_ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  bool literal(const char* word) {
    const char* q = p_;
    for (const char* w = word; *w; ++w, ++q) {
      if (q >= end_ || *q != *w) return false;
    }
    p_ = q;
    return true;
  }

  JsonValue parse_value(int depth) {
    if (depth > max_depth_) fail("nesting too deep");
    if (p_ >= end_) fail("unexpected end");
    JsonValue v;
    char c = *p_;
    if (c == '{') {
      v.kind = JsonValue::Kind::Object;
      ++p_;
      skip_ws();
      if (p_ < end_ && *p_ == '}') {
        ++p_;
        return v;
      }
      for (;;) {
        skip_ws();
        if (p_ >= end_ || *p_ != '"') fail("expected a string key");
        std::string key = parse_string();
        for (const auto& kv : v.object) {
          if (kv.first == key) fail("duplicate key \"" + key + "\"");
        }
        skip_ws();
        if (p_ >= end_ || *p_ != ':') fail("expected ':'");
        ++p_;
        skip_ws();
        v.object.emplace_back(std::move(key), parse_value(depth + 1));
        skip_ws();
        if (p_ < end_ && *p_ == ',') {
          ++p_;
          continue;
        }
        if (p_ < end_ && *p_ == '}') {
          ++p_;
          return v;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      v.kind = JsonValue::Kind::Array;
      ++p_;
      skip_ws();
      if (p_ < end_ && *p_ == ']') {
        ++p_;
        return v;
      }
      for (;;) {
        skip_ws();
        v.array.push_back(parse_value(depth + 1));
        skip_ws();
        if (p_ < end_ && *p_ == ',') {
          ++p_;
          continue;
        }
        if (p_ < end_ && *p_ == ']') {
          ++p_;
          return v;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      v.kind = JsonValue::Kind::String;
      v.string = parse_string();
      return v;
    }
    if (literal("true")) {
      v.kind = JsonValue::Kind::Bool;
      v.boolean = true;
      return v;
    }
    if (literal("false")) {
      v.kind = JsonValue::Kind::Bool;
      return v;
    }
    if (literal("null")) return v;
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
    fail("unexpected character");
  }

  JsonValue parse_number() {
    JsonValue v;
    v.kind = JsonValue::Kind::Number;
    const char* start = p_;
    if (*p_ == '-') {
      v.negative = true;
      ++p_;
    }
    if (p_ >= end_ || !(*p_ >= '0' && *p_ <= '9')) fail("bad number");
    if (*p_ == '0' && p_ + 1 < end_ && p_[1] >= '0' && p_[1] <= '9') fail("leading zero");
    bool overflow = false;
    uint64_t mag = 0;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') {
      uint64_t d = uint64_t(*p_ - '0');
      if (mag > (UINT64_MAX - d) / 10) overflow = true;
      else mag = mag * 10 + d;
      ++p_;
    }
    bool integer = true;
    if (p_ < end_ && *p_ == '.') {
      integer = false;
      ++p_;
      if (p_ >= end_ || !(*p_ >= '0' && *p_ <= '9')) fail("bad fraction");
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      integer = false;
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ >= end_ || !(*p_ >= '0' && *p_ <= '9')) fail("bad exponent");
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    std::string text(start, p_);
    v.number = std::strtod(text.c_str(), nullptr);
    v.is_integer = integer && !overflow;
    v.uinteger = mag;
    return v;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xc0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += char(0xe0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3f));
      out += char(0x80 | (cp & 0x3f));
    } else {
      out += char(0xf0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3f));
      out += char(0x80 | ((cp >> 6) & 0x3f));
      out += char(0x80 | (cp & 0x3f));
    }
  }

  uint32_t hex4() {
    if (end_ - p_ < 4) fail("short \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = *p_++;
      v <<= 4;
      if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
      else fail("bad hex digit");
    }
    return v;
  }

  // Length of the well-formed UTF-8 sequence at p_ (no overlongs, surrogates or > U+10FFFF).
  size_t utf8_sequence_length() {
    const unsigned char* u = reinterpret_cast<const unsigned char*>(p_);
    size_t avail = size_t(end_ - p_);
    unsigned char c = u[0];
    size_t n;
    uint32_t min, cp;
    if (c >= 0xc2 && c <= 0xdf) { n = 2; min = 0x80; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { n = 3; min = 0x800; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 4; min = 0x10000; cp = c & 0x07; }
    else fail("invalid UTF-8 in string");
    if (avail < n) fail("truncated UTF-8 in string");
    for (size_t i = 1; i < n; ++i) {
      if ((u[i] & 0xc0) != 0x80) fail("invalid UTF-8 in string");
      cp = (cp << 6) | (u[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) fail("invalid UTF-8 in string");
    return n;
  }

  std::string parse_string() {
    ++p_;  // opening quote
    std::string out;
    for (;;) {
      if (p_ >= end_) fail("unterminated string");
      unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        return out;
      }
      if (c < 0x20) fail("control character in string");
      if (c >= 0x80) {  // JSON text is UTF-8: refuse malformed sequences instead of passing them on
        size_t n = utf8_sequence_length();
        out.append(p_, n);
        p_ += n;
        continue;
      }
      if (c != '\\') {
        out += char(c);
        ++p_;
        continue;
      }
      ++p_;
      if (p_ >= end_) fail("unterminated escape");
      char e = *p_++;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xd800 && cp < 0xdc00) {
            if (end_ - p_ >= 6 && p_[0] == '\\' && p_[1] == 'u') {
              p_ += 2;
              uint32_t lo = hex4();
              if (lo < 0xdc00 || lo >= 0xe000) fail("bad surrogate pair");
              cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else {
              fail("lone surrogate");
            }
          } else if (cp >= 0xdc00 && cp < 0xe000) {
            fail("lone surrogate");
          }
          append_utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
  }

  const char* p_;
  const char* begin_;
  const char* end_;
  int max_depth_;
};

}  // namespace

JsonValue parse_json(const char* data, size_t size, int max_depth) { return Parser(data, size, max_depth).parse_document(); }

}  // namespace pia
