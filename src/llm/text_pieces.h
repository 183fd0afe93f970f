// The text stages of a Hugging Face `tokenizer.json` pipeline: normalizers, pre-tokenizers and
// decoders, each built from its JSON object. Regular expressions are PCRE2 (the patterns these
// files carry use look-ahead and Unicode classes, which RE2 lacks); Unicode normalization is
// utf8proc.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace outpost {

// A compiled PCRE2 pattern (UTF + Unicode properties, JIT when available). Thread-safe.
class Pcre {
 public:
  explicit Pcre(const std::string& pattern);
  ~Pcre();
  Pcre(const Pcre&) = delete;
  Pcre& operator=(const Pcre&) = delete;
  // Non-overlapping matches, left to right, as [begin, end) byte offsets; an empty match
  // advances one character.
  std::vector<std::pair<size_t, size_t>> FindAll(std::string_view text) const;

 private:
  void* code_;
};

// Replaces every malformed UTF-8 sequence by U+FFFD, so later stages see valid text only.
std::string SanitizeUtf8(std::string_view text);
// True when `text` ends in the middle of a UTF-8 sequence (or holds an invalid one).
bool IsIncompleteUtf8(std::string_view text);

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void Apply(std::string& text) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits each piece further (or rewrites it). `first` is true for the piece at the start of
  // the input, which some schemes treat differently.
  virtual void Apply(std::vector<std::string>& pieces, bool first) const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void Apply(std::vector<std::string>& tokens) const = 0;
};

// Each throws Error(kInvalidArgument) naming a type it does not know; null JSON gives null.
std::unique_ptr<Normalizer> MakeNormalizer(const nlohmann::json& j);
std::unique_ptr<PreTokenizer> MakePreTokenizer(const nlohmann::json& j);
std::unique_ptr<Decoder> MakeDecoder(const nlohmann::json& j);

// GPT-2's byte-to-character table: every byte maps to a printable character.
const std::string& ByteLevelChar(unsigned char byte);
std::string ByteLevelEncode(std::string_view bytes);
// The inverse; characters outside the table pass through as they are.
std::string ByteLevelDecode(std::string_view symbols);

}  // namespace outpost
