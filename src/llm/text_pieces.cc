#include "llm/text_pieces.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <array>
#include <unordered_map>

#include "core/error.h"

namespace outpost {
namespace {

using json = nlohmann::json;

pcre2_code* Code(void* p) { return static_cast<pcre2_code*>(p); }

// Length of the valid UTF-8 sequence at text[i], or 0 when it is malformed or cut off.
size_t Utf8SequenceLength(std::string_view text, size_t i) {
  utf8proc_int32_t cp;
  auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                            static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
  return n > 0 ? static_cast<size_t>(n) : 0;
}

size_t CharLength(std::string_view text, size_t i) {
  size_t n = Utf8SequenceLength(text, i);
  return n ? n : 1;
}

void ReplaceAll(std::string& text, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  std::string out;
  size_t start = 0, pos;
  while ((pos = text.find(from, start)) != std::string::npos) {
    out.append(text, start, pos - start).append(to);
    start = pos + from.size();
  }
  if (start == 0) return;
  out.append(text, start);
  text = std::move(out);
}

// --- Splitting, as tokenizers' SplitDelimiterBehavior -----------------------------------

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

Behavior ParseBehavior(const std::string& name) {
  if (name == "Removed") return Behavior::kRemoved;
  if (name == "Isolated") return Behavior::kIsolated;
  if (name == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::kMergedWithNext;
  if (name == "Contiguous") return Behavior::kContiguous;
  Fail(ErrorCode::kInvalidArgument, "tokenizer: unknown split behavior '" + name + "'");
}

struct Segment {
  size_t begin, end;
  bool match;
};

std::vector<std::string> SplitByMatches(std::string_view text,
                                        const std::vector<std::pair<size_t, size_t>>& matches,
                                        Behavior behavior, bool invert) {
  std::vector<Segment> segments;
  size_t at = 0;
  for (auto [b, e] : matches) {
    if (b > at) segments.push_back({at, b, invert});
    if (e > b) segments.push_back({b, e, !invert});
    at = e;
  }
  if (at < text.size()) segments.push_back({at, text.size(), invert});

  std::vector<Segment> merged;
  bool previous_match = false;
  switch (behavior) {
    case Behavior::kRemoved:
      for (const auto& s : segments)
        if (!s.match) merged.push_back(s);
      break;
    case Behavior::kIsolated:
      merged = segments;
      break;
    case Behavior::kMergedWithPrevious:
      for (const auto& s : segments) {
        if (s.match && !previous_match && !merged.empty())
          merged.back().end = s.end;
        else
          merged.push_back(s);
        previous_match = s.match;
      }
      break;
    case Behavior::kMergedWithNext:
      for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
        if (it->match && !previous_match && !merged.empty())
          merged.back().begin = it->begin;
        else
          merged.push_back(*it);
        previous_match = it->match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    case Behavior::kContiguous:
      for (size_t i = 0; i < segments.size(); ++i) {
        if (i > 0 && segments[i].match == previous_match)
          merged.back().end = segments[i].end;
        else
          merged.push_back(segments[i]);
        previous_match = segments[i].match;
      }
      break;
  }
  std::vector<std::string> out;
  for (const auto& s : merged)
    if (s.end > s.begin) out.emplace_back(text.substr(s.begin, s.end - s.begin));
  return out;
}

std::vector<std::pair<size_t, size_t>> FindLiteral(std::string_view text, std::string_view needle) {
  std::vector<std::pair<size_t, size_t>> out;
  if (needle.empty()) return out;
  for (size_t pos = text.find(needle); pos != std::string_view::npos;
       pos = text.find(needle, pos + needle.size()))
    out.emplace_back(pos, pos + needle.size());
  return out;
}

// A `pattern` object: {"String": "..."} or {"Regex": "..."}.
struct Pattern {
  std::string literal;
  std::shared_ptr<Pcre> regex;

  explicit Pattern(const json& j) {
    if (j.contains("Regex"))
      regex = std::make_shared<Pcre>(j.at("Regex").get<std::string>());
    else
      literal = j.at("String").get<std::string>();
  }
  std::vector<std::pair<size_t, size_t>> Find(std::string_view text) const {
    return regex ? regex->FindAll(text) : FindLiteral(text, literal);
  }
};

std::string Transform(std::string_view text, std::function<utf8proc_int32_t(utf8proc_int32_t)> f) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    utf8proc_int32_t cp;
    auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                              static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
    if (n <= 0) {
      out += text[i++];
      continue;
    }
    utf8proc_uint8_t buf[4];
    auto w = utf8proc_encode_char(f(cp), buf);
    out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(w));
    i += static_cast<size_t>(n);
  }
  return out;
}

// --- Normalizers --------------------------------------------------------------------------

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(utf8proc_option_t options) : options_(options) {}
  void Apply(std::string& text) const override {
    utf8proc_uint8_t* out = nullptr;
    auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                          static_cast<utf8proc_ssize_t>(text.size()), &out, options_);
    if (n < 0) return;  // only valid UTF-8 reaches here; leave the text alone if not
    text.assign(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
    free(out);
  }

 private:
  utf8proc_option_t options_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  void Apply(std::string& text) const override { text = Transform(text, utf8proc_tolower); }
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void Apply(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void Apply(std::string& text) const override {
    if (!pattern_.regex) return ReplaceAll(text, pattern_.literal, content_);
    std::string out;
    size_t at = 0;
    for (auto [b, e] : pattern_.Find(text)) {
      out.append(text, at, b - at).append(content_);
      at = e;
    }
    out.append(text, at);
    text = std::move(out);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void Apply(std::string& text) const override {
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    if (right_)
      while (!text.empty() && space(text.back())) text.pop_back();
    if (left_) {
      size_t i = 0;
      while (i < text.size() && space(text[i])) ++i;
      text.erase(0, i);
    }
  }

 private:
  bool left_, right_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  void Apply(std::string& text) const override {
    for (const auto& p : parts_) p->Apply(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

// --- Pre-tokenizers -----------------------------------------------------------------------

const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space),
        regex_(use_regex ? std::make_unique<Pcre>(kGpt2Pattern) : nullptr) {}
  void Apply(std::vector<std::string>& pieces, bool) const override {
    std::vector<std::string> out;
    for (auto& piece : pieces) {
      if (add_prefix_space_ && piece.front() != ' ') piece.insert(0, " ");
      if (regex_) {
        for (auto& p : SplitByMatches(piece, regex_->FindAll(piece), Behavior::kIsolated, false))
          out.push_back(ByteLevelEncode(p));
      } else {
        out.push_back(ByteLevelEncode(piece));
      }
    }
    pieces = std::move(out);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Pcre> regex_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(Pattern pattern, Behavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void Apply(std::vector<std::string>& pieces, bool) const override {
    std::vector<std::string> out;
    for (const auto& piece : pieces)
      for (auto& p : SplitByMatches(piece, pattern_.Find(piece), behavior_, invert_))
        out.push_back(std::move(p));
    pieces = std::move(out);
  }

 private:
  Pattern pattern_;
  Behavior behavior_;
  bool invert_;
};

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, std::string scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(std::move(scheme)), split_(split) {}
  void Apply(std::vector<std::string>& pieces, bool first) const override {
    std::vector<std::string> out;
    for (size_t i = 0; i < pieces.size(); ++i) {
      std::string piece = pieces[i];
      ReplaceAll(piece, " ", replacement_);
      bool prepend = scheme_ == "always" || (scheme_ == "first" && first && i == 0);
      if (prepend && piece.rfind(replacement_, 0) != 0) piece.insert(0, replacement_);
      if (!split_) {
        out.push_back(std::move(piece));
        continue;
      }
      for (auto& p : SplitByMatches(piece, FindLiteral(piece, replacement_),
                                    Behavior::kMergedWithNext, false))
        out.push_back(std::move(p));
    }
    pieces = std::move(out);
  }

 private:
  std::string replacement_, scheme_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void Apply(std::vector<std::string>& pieces, bool first) const override {
    for (const auto& p : parts_) p->Apply(pieces, first);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

// --- Decoders -----------------------------------------------------------------------------

const std::unordered_map<std::string, unsigned char>& ByteLevelInverse() {
  static const auto* table = [] {
    auto* t = new std::unordered_map<std::string, unsigned char>;
    for (int b = 0; b < 256; ++b) (*t)[ByteLevelChar(static_cast<unsigned char>(b))] = b;
    return t;
  }();
  return *table;
}

class ByteLevelDecoder : public Decoder {
 public:
  void Apply(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) bytes += ByteLevelDecode(t);
    tokens = {SanitizeUtf8(bytes)};
  }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  void Apply(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) ReplaceAll(t, from_, to_);
  }

 private:
  std::string from_, to_;
};

// "<0x41>" -> 0x41; -1 when the token is not a byte token.
int ByteToken(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -100;
  };
  int v = hex(t[3]) * 16 + hex(t[4]);
  return v >= 0 ? v : -1;
}

class ByteFallbackDecoder : public Decoder {
 public:
  void Apply(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    size_t count = 0;
    auto flush = [&] {
      if (count == 0) return;
      if (Utf8Valid(bytes))
        out.push_back(bytes);
      else
        for (size_t i = 0; i < count; ++i) out.emplace_back("\xEF\xBF\xBD");
      bytes.clear();
      count = 0;
    };
    for (auto& t : tokens) {
      int b = ByteToken(t);
      if (b >= 0) {
        bytes += static_cast<char>(b);
        ++count;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }

 private:
  static bool Utf8Valid(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
      size_t n = Utf8SequenceLength(s, i);
      if (!n) return false;
      i += n;
    }
    return true;
  }
};

class FuseDecoder : public Decoder {
 public:
  void Apply(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens = {std::move(all)};
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void Apply(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      for (size_t i = 0; i < start_ && t.rfind(content_, 0) == 0; ++i) t.erase(0, content_.size());
      for (size_t i = 0; i < stop_ && t.size() >= content_.size() &&
                         t.compare(t.size() - content_.size(), content_.size(), content_) == 0;
           ++i)
        t.resize(t.size() - content_.size());
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void Apply(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      ReplaceAll(tokens[i], replacement_, " ");
      if (i == 0 && strip_first_ && tokens[i].rfind(' ', 0) == 0) tokens[i].erase(0, 1);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  void Apply(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->Apply(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

[[noreturn]] void Unsupported(const char* stage, const json& j) {
  Fail(ErrorCode::kInvalidArgument,
       std::string("tokenizer: unsupported ") + stage + " '" + j.value("type", "?") + "'");
}

std::string MetaspaceScheme(const json& j) {
  if (j.contains("prepend_scheme")) return j.at("prepend_scheme").get<std::string>();
  return j.value("add_prefix_space", true) ? "always" : "never";
}

}  // namespace

Pcre::Pcre(const std::string& pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                        PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error, &offset, nullptr);
  if (!code_) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof message);
    Fail(ErrorCode::kInvalidArgument, "tokenizer: bad regex at offset " + std::to_string(offset) +
                                          ": " + reinterpret_cast<char*>(message));
  }
  pcre2_jit_compile(Code(code_), PCRE2_JIT_COMPLETE);  // falls back to the interpreter
}

Pcre::~Pcre() { pcre2_code_free(Code(code_)); }

std::vector<std::pair<size_t, size_t>> Pcre::FindAll(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> out;
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
      pcre2_match_data_create_from_pattern(Code(code_), nullptr), &pcre2_match_data_free);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t at = 0;
  while (at <= text.size()) {
    int rc =
        pcre2_match(Code(code_), subject, text.size(), at, PCRE2_NO_UTF_CHECK, data.get(), nullptr);
    if (rc < 0) break;  // PCRE2_ERROR_NOMATCH, or a limit: stop splitting here
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.get());
    if (ov[1] == ov[0]) {
      if (ov[0] >= text.size()) break;
      at = ov[0] + CharLength(text, ov[0]);
      continue;
    }
    out.emplace_back(ov[0], ov[1]);
    at = ov[1];
  }
  return out;
}

std::string SanitizeUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    size_t n = Utf8SequenceLength(text, i);
    if (n) {
      out.append(text, i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

bool IsIncompleteUtf8(std::string_view text) {
  // Look back at most 3 bytes for the start of the last sequence.
  size_t start = text.size();
  for (size_t k = 0; k < 4 && start > 0; ++k) {
    --start;
    unsigned char c = static_cast<unsigned char>(text[start]);
    if ((c & 0xC0) != 0x80) break;
  }
  if (start == text.size()) return false;
  return Utf8SequenceLength(text, start) == 0;
}

const std::string& ByteLevelChar(unsigned char byte) {
  static const auto* table = [] {
    auto* t = new std::array<std::string, 256>;
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      utf8proc_uint8_t buf[4];
      auto n = utf8proc_encode_char(printable ? b : next++, buf);
      (*t)[b].assign(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
    }
    return t;
  }();
  return (*table)[byte];
}

std::string ByteLevelEncode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) out += ByteLevelChar(c);
  return out;
}

std::string ByteLevelDecode(std::string_view t) {
  const auto& inverse = ByteLevelInverse();
  std::string bytes;
  for (size_t i = 0; i < t.size();) {
    size_t n = CharLength(t, i);
    auto it = inverse.find(std::string(t.substr(i, n)));
    if (it != inverse.end())
      bytes += static_cast<char>(it->second);
    else
      bytes.append(t, i, n);
    i += n;
  }
  return bytes;
}

std::unique_ptr<Normalizer> MakeNormalizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = j.value("type", "");
  if (type == "NFC")
    return std::make_unique<UnicodeNormalizer>(
        static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (type == "NFD")
    return std::make_unique<UnicodeNormalizer>(
        static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE));
  if (type == "NFKC")
    return std::make_unique<UnicodeNormalizer>(
        static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT));
  if (type == "NFKD")
    return std::make_unique<UnicodeNormalizer>(
        static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT));
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Prepend")
    return std::make_unique<PrependNormalizer>(j.at("prepend").get<std::string>());
  if (type == "Replace")
    return std::make_unique<ReplaceNormalizer>(Pattern(j.at("pattern")),
                                               j.at("content").get<std::string>());
  if (type == "Strip")
    return std::make_unique<StripNormalizer>(j.value("strip_left", true),
                                             j.value("strip_right", true));
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& p : j.at("normalizers"))
      if (auto n = MakeNormalizer(p)) parts.push_back(std::move(n));
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  Unsupported("normalizer", j);
}

std::unique_ptr<PreTokenizer> MakePreTokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = j.value("type", "");
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPreTokenizer>(j.value("add_prefix_space", false),
                                                   j.value("use_regex", true));
  if (type == "Split")
    return std::make_unique<SplitPreTokenizer>(Pattern(j.at("pattern")),
                                               ParseBehavior(j.at("behavior").get<std::string>()),
                                               j.value("invert", false));
  if (type == "Metaspace") {
    return std::make_unique<MetaspacePreTokenizer>(j.value("replacement", "\xE2\x96\x81"),
                                                   MetaspaceScheme(j), j.value("split", true));
  }
  if (type == "Digits") {
    return std::make_unique<SplitPreTokenizer>(
        Pattern(json{{"Regex", "\\p{N}"}}),
        j.value("individual_digits", false) ? Behavior::kIsolated : Behavior::kContiguous, false);
  }
  if (type == "Whitespace")
    return std::make_unique<SplitPreTokenizer>(Pattern(json{{"Regex", "\\w+|[^\\w\\s]+"}}),
                                               Behavior::kRemoved, true);
  if (type == "WhitespaceSplit")
    return std::make_unique<SplitPreTokenizer>(Pattern(json{{"Regex", "\\s+"}}), Behavior::kRemoved,
                                               false);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& p : j.at("pretokenizers"))
      if (auto t = MakePreTokenizer(p)) parts.push_back(std::move(t));
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  Unsupported("pre_tokenizer", j);
}

std::unique_ptr<Decoder> MakeDecoder(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = j.value("type", "");
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Replace") {
    const auto& p = j.at("pattern");
    if (!p.contains("String")) Unsupported("decoder (regex Replace)", j);
    return std::make_unique<ReplaceDecoder>(p.at("String").get<std::string>(),
                                            j.at("content").get<std::string>());
  }
  if (type == "Strip")
    return std::make_unique<StripDecoder>(j.at("content").get<std::string>(),
                                          j.value("start", size_t{0}), j.value("stop", size_t{0}));
  if (type == "Metaspace")
    return std::make_unique<MetaspaceDecoder>(j.value("replacement", "\xE2\x96\x81"),
                                              MetaspaceScheme(j) != "never");
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const auto& p : j.at("decoders"))
      if (auto d = MakeDecoder(p)) parts.push_back(std::move(d));
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  Unsupported("decoder", j);
}

}  // namespace outpost
