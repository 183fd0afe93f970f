#include "core/json_fields.h"

#include <algorithm>
#include <sstream>

namespace outpost {
namespace {

const nlohmann::json& EmptyObject() {
  static const nlohmann::json empty = nlohmann::json::object();
  return empty;
}

}  // namespace

JsonFields::JsonFields(const nlohmann::json& object, std::string context, std::string path)
    : object_(object.is_null() ? EmptyObject() : object),
      context_(std::move(context)),
      path_(std::move(path)) {
  if (!object_.is_object()) {
    const std::string prefix = context_.empty() ? "" : context_ + ": ";
    throw FieldError(path_, prefix + (path_.empty() ? std::string("expected a JSON object")
                                                    : "'" + path_ + "' must be an object"));
  }
}

bool JsonFields::Has(std::string_view key) const { return Find(key) != nullptr; }

const nlohmann::json* JsonFields::Find(std::string_view key) const {
  auto it = object_.find(key);
  return it == object_.end() || it->is_null() ? nullptr : &*it;
}

std::string JsonFields::Path(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

void JsonFields::Fail(std::string_view key, const std::string& what) const {
  const std::string field = Path(key);
  throw FieldError(field, (context_.empty() ? "" : context_ + ": ") + "'" + field + "' " + what);
}

int64_t JsonFields::CheckedInteger(std::string_view key, const nlohmann::json& v, int64_t min,
                                   int64_t max) const {
  const bool is_int = v.is_number_integer();
  // Non-negative literals arrive as unsigned: compare them as such, against both bounds.
  const bool fits =
      is_int &&
      (v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(max) &&
                                    (min <= 0 || v.get<uint64_t>() >= static_cast<uint64_t>(min))
                              : v.get<int64_t>() >= min && v.get<int64_t>() <= max);
  if (!fits) Fail(key, "must be an integer in " + std::to_string(min) + ".." + std::to_string(max));
  return v.is_number_unsigned() ? static_cast<int64_t>(v.get<uint64_t>()) : v.get<int64_t>();
}

int64_t JsonFields::Integer(std::string_view key, int64_t fallback, int64_t min,
                            int64_t max) const {
  const nlohmann::json* v = Find(key);
  return v ? CheckedInteger(key, *v, min, max) : fallback;
}

double JsonFields::Number(std::string_view key, double fallback, double min, double max) const {
  const nlohmann::json* v = Find(key);
  if (!v) return fallback;
  const double d = v->is_number() ? v->get<double>() : std::nan("");
  if (!std::isfinite(d) || d < min || d > max) {
    auto text = [](double x) {
      std::ostringstream out;
      out << x;  // 0, 0.5, 1e+06: as short as the number is
      return out.str();
    };
    Fail(key, "must be a number in " + text(min) + ".." + text(max));
  }
  return d;
}

void JsonFields::OnlyKeys(std::initializer_list<std::string_view> allowed) const {
  RefuseUnknown([&](const std::string& k) {
    return std::find(allowed.begin(), allowed.end(), k) != allowed.end();
  });
}

void JsonFields::OnlyKeys(const std::vector<std::string>& allowed) const {
  RefuseUnknown([&](const std::string& k) {
    return std::find(allowed.begin(), allowed.end(), k) != allowed.end();
  });
}

void JsonFields::RefuseUnknown(const std::function<bool(const std::string&)>& known) const {
  for (const auto& [k, v] : object_.items())
    if (!known(k))
      throw FieldError(
          Path(k), (context_.empty() ? "" : context_ + ": ") + "unknown field '" + Path(k) + "'");
}

JsonFields JsonFields::Object(std::string_view key) const {
  const nlohmann::json* v = Find(key);
  return JsonFields(v ? *v : EmptyObject(), context_, Path(key));
}

}  // namespace outpost
