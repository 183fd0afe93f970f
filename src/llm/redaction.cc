#include "llm/redaction.h"

#include <arpa/inet.h>
#include <re2/re2.h>

#include <algorithm>
#include <cctype>
#include <functional>

#include "core/error.h"

namespace outpost {
namespace {

std::string Digits(std::string_view s) {
  std::string d;
  for (char c : s)
    if (c >= '0' && c <= '9') d += c;
  return d;
}

bool Luhn(const std::string& digits) {
  int sum = 0;
  bool twice = false;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    int d = *it - '0';
    if (twice) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
    twice = !twice;
  }
  return sum % 10 == 0;
}

bool CardNumber(std::string_view s) {
  std::string d = Digits(s);
  return d.size() >= 13 && d.size() <= 19 && Luhn(d);
}

// ISO 13616: move the first four characters to the end, letters to 10..35, mod 97 == 1.
bool Iban(std::string_view s) {
  std::string compact;
  for (char c : s)
    if (c != ' ') compact += c;
  if (compact.size() < 15 || compact.size() > 34) return false;
  std::string rotated = compact.substr(4) + compact.substr(0, 4);
  int rem = 0;
  for (char c : rotated) {
    int v = c >= 'A' && c <= 'Z' ? c - 'A' + 10 : c - '0';
    rem = (v >= 10 ? rem * 100 + v : rem * 10 + v) % 97;
  }
  return rem == 1;
}

bool Ipv6(std::string_view s) {
  in6_addr a{};
  return ::inet_pton(AF_INET6, std::string(s).c_str(), &a) == 1;
}

// A phone number: 7 to 15 digits (E.164), written with a leading + or, without one, at least
// 9 digits; an ISO date (2026-11-24) is not one.
bool Phone(std::string_view s) {
  std::string d = Digits(s);
  if (d.size() < 7 || d.size() > 15) return false;
  static const re2::RE2 date(R"(\d{4}-\d{2}-\d{2}.*)");
  if (re2::RE2::FullMatch(re2::StringPiece(s.data(), s.size()), date)) return false;
  return s.front() == '+' || d.size() >= 9;
}

bool ValidKind(const std::string& k) {
  if (k.empty() || k[0] < 'A' || k[0] > 'Z') return false;
  return std::all_of(k.begin(), k.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

struct Span {
  size_t begin, end;
  size_t detector;
};

}  // namespace

struct Redactor::Detector {
  std::string kind;
  std::unique_ptr<re2::RE2> re;
  std::function<bool(std::string_view)> valid;
  bool standalone = false;  // not glued to letters, digits or ':' ("std::vector" is no IPv6)
};

Redactor::Redactor(const std::vector<RedactionRule>& custom) {
  auto add = [&](const std::string& kind, const std::string& pattern,
                 std::function<bool(std::string_view)> valid, bool standalone = true) {
    if (!ValidKind(kind))
      Fail(ErrorCode::kInvalidArgument, "redaction kind '" + kind + "' must match [A-Z][A-Z0-9_]*");
    re2::RE2::Options o;
    o.set_log_errors(false);
    auto re = std::make_unique<re2::RE2>(pattern, o);
    if (!re->ok())
      Fail(ErrorCode::kInvalidArgument,
           "redaction pattern for " + kind + " is not valid RE2: " + re->error());
    if (re->NumberOfCapturingGroups() > 0)
      re = std::make_unique<re2::RE2>("(?:" + pattern + ")", o);  // whole match only
    detectors_.push_back(
        std::make_unique<Detector>(Detector{kind, std::move(re), std::move(valid), standalone}));
  };
  for (const auto& r : custom) add(r.kind, r.pattern, nullptr, /*standalone=*/false);
  add("EMAIL", R"([A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})", nullptr);
  add("IBAN", R"(\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b)", Iban);
  add("CARD", R"(\b\d(?:[ -]?\d){12,18}\b)", CardNumber);
  add("IP",
      R"(\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b)",
      nullptr);
  add("IP", R"((?:[0-9A-Fa-f]{1,4}|:)(?::[0-9A-Fa-f]{0,4}){2,7}(?:%[0-9A-Za-z]+)?)", Ipv6);
  add("PHONE", R"(\+?\(?\d[\d ().-]{5,}\d)", Phone);
}

Redactor::~Redactor() = default;

Redaction Redactor::Redact(std::string_view text) const {
  // Every detector's matches, then the earliest-listed detector wins where spans overlap.
  std::vector<Span> spans;
  for (size_t d = 0; d < detectors_.size(); ++d) {
    const auto& det = *detectors_[d];
    re2::StringPiece input(text.data(), text.size());
    re2::StringPiece match;
    size_t pos = 0;
    while (pos <= text.size() &&
           det.re->Match(input, pos, text.size(), re2::RE2::UNANCHORED, &match, 1)) {
      size_t begin = static_cast<size_t>(match.data() - input.data());
      size_t end = begin + match.size();
      if (match.empty()) {
        pos = begin + 1;
        continue;
      }
      bool overlaps = std::any_of(spans.begin(), spans.end(),
                                  [&](const Span& s) { return begin < s.end && s.begin < end; });
      auto glued = [&](size_t i) {
        char c = text[i];
        return std::isalnum(static_cast<unsigned char>(c)) || c == ':';
      };
      if (det.standalone &&
          ((begin > 0 && glued(begin - 1)) || (end < text.size() && glued(end)))) {
        pos = begin + 1;
        continue;
      }
      if (!overlaps && (!det.valid || det.valid(std::string_view(match.data(), match.size()))))
        spans.push_back({begin, end, d});
      pos = end;
    }
  }
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin < b.begin; });
  Redaction r;
  std::map<std::pair<std::string, std::string>, std::string> known;  // (kind, value) -> placeholder
  std::map<std::string, int> next;
  size_t at = 0;
  for (const auto& s : spans) {
    const std::string& kind = detectors_[s.detector]->kind;
    std::string value(text.substr(s.begin, s.end - s.begin));
    auto& placeholder = known[{kind, value}];
    if (placeholder.empty()) {
      // Never a placeholder the text already contains: Restore must not touch the user's own.
      do {
        placeholder = "[" + kind + "_" + std::to_string(++next[kind]) + "]";
      } while (text.find(placeholder) != std::string_view::npos);
      r.originals[placeholder] = value;
    }
    r.text.append(text.substr(at, s.begin - at));
    r.text += placeholder;
    ++r.counts[kind];
    at = s.end;
  }
  r.text.append(text.substr(at));
  return r;
}

std::string Redactor::Restore(std::string_view text, const Redaction& r) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '[') {
      size_t close = text.find(']', i);
      if (close != std::string_view::npos) {
        auto it = r.originals.find(std::string(text.substr(i, close - i + 1)));
        if (it != r.originals.end()) {
          out += it->second;
          i = close + 1;
          continue;
        }
      }
    }
    out += text[i++];
  }
  return out;
}

std::string StreamingRestorer::Push(std::string_view piece) {
  held_.append(piece);
  // Placeholders are "[" + [A-Z0-9_]+ + "]"; hold from the last "[" that may still become one.
  size_t keep = held_.size();
  size_t open = held_.rfind('[');
  if (open != std::string::npos && held_.find(']', open) == std::string::npos &&
      held_.size() - open <= 48) {
    bool could_be = true;
    for (size_t i = open + 1; i < held_.size(); ++i) {
      char c = held_[i];
      could_be = could_be && ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_');
    }
    if (could_be) keep = open;
  }
  std::string out = Redactor::Restore(std::string_view(held_).substr(0, keep), redaction_);
  held_.erase(0, keep);
  return out;
}

std::string StreamingRestorer::Finish() {
  std::string out = Redactor::Restore(held_, redaction_);
  held_.clear();
  return out;
}

}  // namespace outpost
