#include "core/json_input.h"

#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace outpost {
namespace {

using json = nlohmann::json;
using DomBuilder = nlohmann::detail::json_sax_dom_parser<json>;

// nlohmann's own DOM builder behind a gate: every event is counted against the limits first,
// and the first one over a limit stops the parse (returning false ends sax_parse at once).
class BoundedSax {
 public:
  BoundedSax(json& root, const JsonLimits& limits) : dom_(root, false), limits_(limits) {}

  bool null() { return Value() && dom_.null(); }
  bool boolean(bool v) { return Value() && dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return Value() && dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return Value() && dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const std::string& s) {
    return Value() && dom_.number_float(v, s);
  }
  bool string(std::string& v) { return Value() && String(v) && dom_.string(v); }
  bool binary(json::binary_t& v) { return Value() && dom_.binary(v); }
  bool start_object(std::size_t n) { return Value() && Open() && dom_.start_object(n); }
  bool key(std::string& k) { return String(k) && dom_.key(k); }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) { return Value() && Open() && dom_.start_array(n); }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) {
    // nlohmann's message names the position and the token; drop its "[json.exception...]" tag.
    std::string what = e.what();
    if (auto at = what.find("] "); at != std::string::npos) what = what.substr(at + 2);
    error_ = ErrorCode::kInvalidArgument;
    message_ = "not valid JSON at byte " + std::to_string(position) + ": " + what;
    return false;
  }

  const std::string& message() const { return message_; }
  ErrorCode error() const { return error_; }

 private:
  bool Refuse(std::string message) {
    error_ = ErrorCode::kInvalidArgument;
    message_ = std::move(message);
    return false;
  }
  bool Value() {
    if (++elements_ > limits_.max_elements)
      return Refuse("more than " + std::to_string(limits_.max_elements) + " values");
    return true;
  }
  bool Open() {
    if (++depth_ > limits_.max_depth)
      return Refuse("nested deeper than " + std::to_string(limits_.max_depth) + " levels");
    return true;
  }
  bool String(const std::string& s) {
    if (s.size() > limits_.max_string_bytes)
      return Refuse("a string longer than " + std::to_string(limits_.max_string_bytes) + " bytes");
    return true;
  }

  DomBuilder dom_;
  const JsonLimits& limits_;
  int depth_ = 0;
  size_t elements_ = 0;
  ErrorCode error_ = ErrorCode::kInvalidArgument;
  std::string message_;
};

}  // namespace

json ParseJson(std::string_view text, const JsonLimits& limits, std::string_view what) {
  const std::string prefix = what.empty() ? std::string() : std::string(what) + ": ";
  if (text.size() > limits.max_bytes) {
    Fail(ErrorCode::kPayloadTooLarge, prefix + std::to_string(text.size()) +
                                          " bytes of JSON, more than the limit of " +
                                          std::to_string(limits.max_bytes));
  }
  // nlohmann's lexer takes a NUL byte for the end of the input, so "{}\0anything" would pass as
  // "{}". JSON text has no raw NUL anywhere (in strings it is written \u0000): refuse it.
  if (const size_t nul = text.find('\0'); nul != std::string_view::npos)
    Fail(ErrorCode::kInvalidArgument,
         prefix + "not valid JSON at byte " + std::to_string(nul) + ": a NUL byte");
  json root;
  BoundedSax sax(root, limits);
  const bool ok = json::sax_parse(text.begin(), text.end(), &sax, json::input_format_t::json,
                                  /*strict=*/true, /*ignore_comments=*/false);
  if (!ok) {
    // What was built before the refusal is within the limits, so destroying it is safe.
    Fail(sax.error(), prefix + (sax.message().empty() ? "not valid JSON" : sax.message()));
  }
  return root;
}

int JsonDepth(const json& value) {
  int deepest = 0;
  std::vector<std::pair<const json*, int>> todo{{&value, 0}};
  while (!todo.empty()) {
    auto [v, depth] = todo.back();
    todo.pop_back();
    if (!v->is_structured()) continue;
    deepest = std::max(deepest, depth + 1);
    for (const auto& child : *v) todo.emplace_back(&child, depth + 1);
  }
  return deepest;
}

}  // namespace outpost
