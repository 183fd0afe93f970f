// Fields of a JSON request body, read with a precise error when one has the wrong type
// (nlohmann's own would be "type must be number, but is string", naming no field).
#pragma once

#include <cmath>
#include <string>
#include <string_view>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace outpost::fleet {

template <typename T>
T Field(const nlohmann::json& body, std::string_view key, T fallback) {
  if (!body.is_object()) Fail(ErrorCode::kInvalidArgument, "the body must be a JSON object");
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return fallback;
  const std::string name(key);
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) Fail(ErrorCode::kInvalidArgument, "'" + name + "' must be a string");
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean())
      Fail(ErrorCode::kInvalidArgument, "'" + name + "' must be true or false");
  } else if constexpr (std::is_integral_v<T>) {
    if (!it->is_number_integer())
      Fail(ErrorCode::kInvalidArgument, "'" + name + "' must be an integer");
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!it->is_number() || !std::isfinite(it->template get<double>()))
      Fail(ErrorCode::kInvalidArgument, "'" + name + "' must be a number");
  }
  return it->template get<T>();
}

inline std::string Field(const nlohmann::json& body, std::string_view key, const char* fallback) {
  return Field<std::string>(body, key, fallback);
}

}  // namespace outpost::fleet
