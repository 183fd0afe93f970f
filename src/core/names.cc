#include "core/names.h"

#include <charconv>
#include <ctime>
#include <vector>

namespace outpost {
namespace {

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool IsSafeLabel(std::string_view s) {
  if (s.empty() || s.size() > 128 || !IsAlnum(s[0])) return false;
  for (char c : s) {
    if (!IsAlnum(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return s.find("..") == std::string_view::npos;
}

std::vector<std::string_view> Split(std::string_view s) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t dot = s.find_first_of(".-+", start);
    parts.push_back(s.substr(start, dot == std::string_view::npos ? s.npos : dot - start));
    if (dot == std::string_view::npos) return parts;
    start = dot + 1;
  }
}

bool ParseNumber(std::string_view s, unsigned long long& out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

}  // namespace

bool IsValidModelName(std::string_view name) { return IsSafeLabel(name); }
bool IsValidVersionLabel(std::string_view version) { return IsSafeLabel(version); }

int CompareVersions(std::string_view a, std::string_view b) {
  auto pa = Split(a), pb = Split(b);
  for (size_t i = 0; i < pa.size() || i < pb.size(); ++i) {
    // Running out first means older, unless the other goes on with a pre-release tag
    // ("1.0.0" is newer than "1.0.0-rc1").
    unsigned long long ignored = 0;
    if (i >= pa.size()) return ParseNumber(pb[i], ignored) ? -1 : 1;
    if (i >= pb.size()) return ParseNumber(pa[i], ignored) ? 1 : -1;
    unsigned long long na = 0, nb = 0;
    bool a_num = ParseNumber(pa[i], na), b_num = ParseNumber(pb[i], nb);
    if (a_num && b_num) {
      if (na != nb) return na < nb ? -1 : 1;
    } else if (a_num != b_num) {
      return a_num ? 1 : -1;  // a release component sorts above a text (pre-release) one
    } else if (int c = pa[i].compare(pb[i]); c != 0) {
      return c < 0 ? -1 : 1;
    }
  }
  return 0;
}

bool IsPathInside(const std::filesystem::path& root, const std::filesystem::path& path) {
  std::error_code ec;
  auto r = std::filesystem::weakly_canonical(root, ec);
  if (ec) return false;
  auto p = std::filesystem::weakly_canonical(path, ec);
  if (ec) return false;
  auto [ri, pi] = std::mismatch(r.begin(), r.end(), p.begin(), p.end());
  return ri == r.end();
}

std::string FormatLocalNow(const char* format) {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[64];
  return std::string(buf, std::strftime(buf, sizeof buf, format, &tm));
}

std::string FormatUtc(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  return std::string(buf, std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm));
}

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace outpost
