// The one way Outpost reads the fields of a JSON object it was given (config files, manifests,
// request bodies, trust files): typed, with an error that names the field and says what it must
// be — "config: 'chat_cloud.retries' must be an integer in 0..10" — and "only these keys".
// Parse untrusted text with ParseJson (core/json_input.h) first; this reads what it returned.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace outpost {

// Error(kInvalidArgument) that also names the field at fault ("chat_cloud.retries"), for front
// ends that report it apart (OpenAI's "param").
class FieldError : public Error {
 public:
  FieldError(std::string field, const std::string& message)
      : Error(ErrorCode::kInvalidArgument, message), field_(std::move(field)) {}
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};

class JsonFields {
 public:
  // `context` opens every message ("config", "package manifest"; may be empty); `path` is where
  // the object sits ("chat_cloud", "inputs[2]"). A null `object` reads as an empty one; anything
  // else that is not an object is refused.
  JsonFields(const nlohmann::json& object, std::string context, std::string path = {});

  // Present and not null.
  bool Has(std::string_view key) const;
  // The value, or nullptr when absent or null.
  const nlohmann::json* Find(std::string_view key) const;

  // Typed reads: strings, booleans, integers (range-checked for T), finite numbers, JSON
  // values, arrays of strings; any other T through nlohmann's conversion.
  template <typename T>
  T Get(std::string_view key, T fallback) const {
    const nlohmann::json* v = Find(key);
    return v ? Convert<T>(key, *v) : fallback;
  }
  std::string Get(std::string_view key, const char* fallback) const {
    return Get<std::string>(key, fallback);
  }
  template <typename T>
  std::optional<T> Optional(std::string_view key) const {
    const nlohmann::json* v = Find(key);
    return v ? std::optional<T>(Convert<T>(key, *v)) : std::nullopt;
  }
  template <typename T>
  T Require(std::string_view key) const {
    const nlohmann::json* v = Find(key);
    if (!v) Fail(key, "is required");
    return Convert<T>(key, *v);
  }
  // An integer within [min, max]; refused before any conversion (1e300 as an int is UB).
  int64_t Integer(std::string_view key, int64_t fallback, int64_t min, int64_t max) const;
  // A finite number within [min, max].
  double Number(std::string_view key, double fallback, double min, double max) const;

  // Refuses a key not among `allowed`: "<context>: unknown field '<path.key>'".
  void OnlyKeys(std::initializer_list<std::string_view> allowed) const;
  void OnlyKeys(const std::vector<std::string>& allowed) const;
  // A nested object (an empty one when absent or null).
  JsonFields Object(std::string_view key) const;

  const nlohmann::json& json() const { return object_; }
  std::string Path(std::string_view key) const;
  // "<context>: '<path.key>' <what>", as a FieldError naming <path.key>.
  [[noreturn]] void Fail(std::string_view key, const std::string& what) const;

 private:
  template <typename T>
  T Convert(std::string_view key, const nlohmann::json& v) const {
    if constexpr (std::is_same_v<T, nlohmann::json>) {
      return v;
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!v.is_string()) Fail(key, "must be a string");
      return v.get<std::string>();
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!v.is_boolean()) Fail(key, "must be true or false");
      return v.get<bool>();
    } else if constexpr (std::is_integral_v<T>) {
      if (!v.is_number_integer() ||
          (std::is_unsigned_v<T> && !v.is_number_unsigned() && v.get<int64_t>() < 0))
        Fail(key, std::is_unsigned_v<T> ? "must be a non-negative integer" : "must be an integer");
      constexpr int64_t lo =
          std::is_signed_v<T> ? static_cast<int64_t>(std::numeric_limits<T>::min()) : 0;
      constexpr int64_t hi = sizeof(T) >= 8 ? std::numeric_limits<int64_t>::max()
                                            : static_cast<int64_t>(std::numeric_limits<T>::max());
      return static_cast<T>(CheckedInteger(key, v, lo, hi));
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!v.is_number() || !std::isfinite(v.get<double>())) Fail(key, "must be a number");
      return v.get<T>();
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      bool ok = v.is_array();
      for (const auto& e : v) ok = ok && e.is_string();
      if (!ok) Fail(key, "must be an array of strings");
      return v.get<T>();
    } else {
      try {
        return v.get<T>();
      } catch (const nlohmann::json::exception&) {
        Fail(key, "has the wrong type");
      }
    }
  }
  int64_t CheckedInteger(std::string_view key, const nlohmann::json& v, int64_t min,
                         int64_t max) const;
  void RefuseUnknown(const std::function<bool(const std::string&)>& known) const;

  const nlohmann::json& object_;
  std::string context_, path_;
};

}  // namespace outpost
