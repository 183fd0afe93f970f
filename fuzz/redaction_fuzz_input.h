// The redaction fuzz input (shared by fuzz/redaction_fuzz.cc and the corpus replay test): any
// text, as a prompt bound for the cloud. Redacting must not crash, and restoring what was
// redacted must give back the text exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "llm/redaction.h"

namespace outpost_fuzz {

inline void RunRedactionInput(const uint8_t* data, size_t size) {
  static const outpost::Redactor redactor(
      std::vector<outpost::RedactionRule>{{"TICKET", R"(TCK-\d+)"}});
  std::string_view text(reinterpret_cast<const char*>(data), size);
  outpost::Redaction r = redactor.Redact(text);
  if (outpost::Redactor::Restore(r.text, r) != text) __builtin_trap();
}

}  // namespace outpost_fuzz
