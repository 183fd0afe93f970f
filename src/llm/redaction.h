// What leaves the device for a cloud LLM is redacted first: e-mail addresses, phone numbers,
// payment card numbers (Luhn-checked), IBANs (mod-97-checked), IPv4 and IPv6 addresses and
// configured patterns become placeholders such as [EMAIL_1]; the same value gets the same
// placeholder, so the answer can refer to it, and Restore() puts the originals back.
// Matching is RE2 (linear time, no backtracking) over untrusted text.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace re2 {
class RE2;
}

namespace outpost {

struct RedactionRule {
  std::string kind;     // placeholder label: [A-Z][A-Z0-9_]*
  std::string pattern;  // RE2 syntax
};

struct Redaction {
  std::string text;
  std::map<std::string, std::string> originals;  // placeholder -> original value
  std::map<std::string, int> counts;             // kind -> values replaced
};

class Redactor {
 public:
  // `custom` rules come before the built-in ones. Throws Error(kInvalidArgument) for a pattern
  // RE2 refuses or a bad kind.
  explicit Redactor(const std::vector<RedactionRule>& custom = {});
  ~Redactor();

  Redaction Redact(std::string_view text) const;
  // Replaces the placeholders `r` made in `text` by their originals (one left-to-right pass:
  // a restored value is never scanned again).
  static std::string Restore(std::string_view text, const Redaction& r);

 private:
  struct Detector;
  std::vector<std::unique_ptr<Detector>> detectors_;
};

// Restores placeholders in an answer that arrives in pieces: text that may be the start of a
// placeholder ("[EMA", "[EMAIL_1") is held back until it is complete or cannot be one.
class StreamingRestorer {
 public:
  explicit StreamingRestorer(const Redaction& r) : redaction_(r) {}
  std::string Push(std::string_view piece);
  std::string Finish();

 private:
  const Redaction& redaction_;
  std::string held_;
};

}  // namespace outpost
