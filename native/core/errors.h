#pragma once
// PiaException carries the stable error code of API.md across the native core; the addon turns
// it into a JS Error with the same `code`, so a bad file never takes the process down.
#include <stdexcept>
#include <string>

namespace pia {

class PiaException : public std::runtime_error {
 public:
  PiaException(std::string code, const std::string& message, std::string key = {}, std::string file = {})
      : std::runtime_error(message), code_(std::move(code)), key_(std::move(key)), file_(std::move(file)) {}
  const std::string& code() const { return code_; }
  const std::string& key() const { return key_; }
  const std::string& file() const { return file_; }

 private:
  std::string code_, key_, file_;
};

[[noreturn]] inline void throw_error(const char* code, const std::string& message, const std::string& key = {},
                                     const std::string& file = {}) {
  throw PiaException(code, message, key, file);
}

}  // namespace pia

#define PIA_CHECK(cond, code, msg)                         \
  do {                                                     \
    if (!(cond)) ::pia::throw_error((code), (msg));        \
  } while (0)
