// One declaration per configuration key drives everything a key needs: reading it from a JSON
// config file (typed; unknown keys refused), printing the effective configuration (secrets as
// "(set)"), checking its range, and its command-line flag. A key used to be written in five
// places (the struct, the file reader, the printer, the checks, the flags) that drifted apart.
//
// The schema knows nothing of a command-line library: an app registers each Key's `flag` with
// its own parser and hands the words it got to `set_from_flag`.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_fields.h"

namespace outpost {

enum class FlagKind {
  kNone,      // the config file only (objects, secrets)
  kSwitch,    // --name sets true, --no-name false
  kValue,     // --name VALUE
  kRepeated,  // --name A B ... (a list of strings)
};

namespace config_schema_detail {

// What a field looks like in JSON: paths are strings there.
template <typename T>
struct Io {
  using Json = T;
  static const T& Out(const T& v) { return v; }
  static void In(T& field, Json v) { field = std::move(v); }
};
template <>
struct Io<std::filesystem::path> {
  using Json = std::string;
  static std::string Out(const std::filesystem::path& v) { return v.string(); }
  static void In(std::filesystem::path& field, std::string v) { field = std::move(v); }
};

inline std::string Dashed(std::string name) {
  for (char& ch : name)
    if (ch == '_') ch = '-';
  return name;
}

inline std::string Bound(double v, bool integral) {
  if (integral) return std::to_string(static_cast<int64_t>(v));
  std::string s = std::to_string(v);
  s.erase(s.find_last_not_of('0') + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

// A flag's word as a T, or an error naming the flag.
template <typename T>
typename Io<T>::Json FromWord(const std::string& flag, const std::string& word) {
  using J = typename Io<T>::Json;
  if constexpr (std::is_same_v<J, std::string>) {
    return word;
  } else if constexpr (std::is_same_v<J, bool>) {
    if (word == "true") return true;
    if (word == "false") return false;
    Fail(ErrorCode::kInvalidArgument, flag + ": '" + word + "' is not true or false");
  } else if constexpr (std::is_integral_v<J>) {
    J v{};
    auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), v);
    if (ec == std::errc::result_out_of_range)
      Fail(ErrorCode::kInvalidArgument, flag + ": " + word + " is out of range");
    if (ec != std::errc() || end != word.data() + word.size() || word.empty())
      Fail(ErrorCode::kInvalidArgument,
           flag + ": '" + word + "' is not " +
               (std::is_unsigned_v<J> ? "a non-negative integer" : "an integer"));
    return v;
  } else {
    static_assert(std::is_floating_point_v<J>, "a flag's value is a string, bool or number");
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size() || word.empty() || !std::isfinite(v))
      Fail(ErrorCode::kInvalidArgument, flag + ": '" + word + "' is not a number");
    return static_cast<J>(v);
  }
}

}  // namespace config_schema_detail

template <typename Config>
class ConfigSchema {
 public:
  // `path`: where these keys sit in the config file ("chat_cloud"), for messages; empty: the
  // top. Keys below the top have no flags.
  explicit ConfigSchema(std::string path = {}) : path_(std::move(path)) {}

  struct Options {
    // Empty: "--" and the name with dashes. May list aliases CLI11-style ("--a,--b"); the first
    // names the key in messages. "-": no flag.
    std::string flag;
    bool secret = false;  // printed as "(set)"; never a flag (argv is world-readable)
    std::optional<double> min, max;
    std::vector<std::string> one_of;  // for strings
  };

  struct Key {
    std::string name;
    std::string flag;  // empty for FlagKind::kNone
    std::string help;
    std::string type;  // for help: INT, UINT, NUMBER, TEXT, PATH
    FlagKind kind = FlagKind::kNone;
    std::function<void(const JsonFields&, Config&)> read;
    std::function<nlohmann::json(const Config&)> write;
    std::function<void(const Config&)> check;
    std::function<void(Config&, const std::vector<std::string>&)> set_from_flag;
  };

  template <typename T>
  ConfigSchema& Add(std::string name, T Config::*field, std::string help, Options o = {}) {
    namespace d = config_schema_detail;
    using J = typename d::Io<T>::Json;
    Key k;
    k.name = name;
    k.help = std::move(help);
    if (o.flag == "-" || o.secret || !path_.empty() || std::is_same_v<J, nlohmann::json>) {
      k.kind = FlagKind::kNone;
    } else if constexpr (std::is_same_v<J, bool>) {
      k.kind = FlagKind::kSwitch;
    } else if constexpr (std::is_same_v<J, std::vector<std::string>>) {
      k.kind = FlagKind::kRepeated;
    } else {
      k.kind = FlagKind::kValue;
    }
    if (k.kind != FlagKind::kNone) k.flag = o.flag.empty() ? "--" + d::Dashed(name) : o.flag;
    k.type = std::is_same_v<T, std::filesystem::path> ? "PATH"
             : std::is_floating_point_v<J>            ? "NUMBER"
             : std::is_unsigned_v<J>                  ? "UINT"
             : std::is_integral_v<J>                  ? "INT"
                                                      : "TEXT";
    const std::string qualified = path_.empty() ? name : path_ + "." + name;
    const std::string shown =
        k.flag.empty() ? qualified : qualified + " (" + FirstFlag(k.flag) + ")";

    k.read = [name, field](const JsonFields& f, Config& c) {
      d::Io<T>::In(c.*field, f.Get<J>(name, J(d::Io<T>::Out(c.*field))));
    };
    k.write = [field, secret = o.secret](const Config& c) -> nlohmann::json {
      if (secret) return J(d::Io<T>::Out(c.*field)) == J{} ? "" : "(set)";
      return d::Io<T>::Out(c.*field);
    };
    k.check = [field, shown, o](const Config& c) {
      if constexpr (std::is_arithmetic_v<J> && !std::is_same_v<J, bool>) {
        const double v = static_cast<double>(c.*field);
        if ((o.min && v < *o.min) || (o.max && v > *o.max)) {
          constexpr bool integral = std::is_integral_v<J>;
          const std::string range =
              o.min && o.max ? d::Bound(*o.min, integral) + ".." + d::Bound(*o.max, integral)
              : o.min        ? ">= " + d::Bound(*o.min, integral)
                             : "<= " + d::Bound(*o.max, integral);
          Fail(ErrorCode::kInvalidArgument, shown + " must be " + range);
        }
      } else if constexpr (std::is_same_v<J, std::string>) {
        if (o.one_of.empty()) return;
        const std::string v = d::Io<T>::Out(c.*field);
        for (const auto& allowed : o.one_of)
          if (v == allowed) return;
        std::string list;
        for (const auto& allowed : o.one_of) list += (list.empty() ? "" : ", ") + allowed;
        Fail(ErrorCode::kInvalidArgument, shown + " must be one of " + list + ", not '" + v + "'");
      } else {
        static_cast<void>(c.*field);  // no range for this type
      }
    };
    k.set_from_flag = [field, flag = FirstFlag(k.flag)](Config& c,
                                                        const std::vector<std::string>& words) {
      if constexpr (std::is_same_v<J, std::vector<std::string>>) {
        c.*field = words;
      } else if constexpr (!std::is_same_v<J, nlohmann::json>) {
        if (words.size() != 1) Fail(ErrorCode::kInvalidArgument, flag + " takes one value");
        d::Io<T>::In(c.*field, d::FromWord<T>(flag, words[0]));
      } else {
        static_cast<void>(c.*field);  // objects have no flag
      }
    };
    keys_.push_back(std::move(k));
    return *this;
  }

  // A key of a type the schema cannot read by itself (a list of objects, a map): the caller
  // reads, checks and prints it. Config file only.
  ConfigSchema& Add(std::string name, std::string help,
                    std::function<void(const JsonFields&, Config&)> read,
                    std::function<nlohmann::json(const Config&)> write) {
    Key k;
    k.name = std::move(name);
    k.help = std::move(help);
    k.type = "JSON";
    k.read = std::move(read);
    k.write = std::move(write);
    k.check = [](const Config&) {};
    k.set_from_flag = [](Config&, const std::vector<std::string>&) {};
    keys_.push_back(std::move(k));
    return *this;
  }

  // Reads the keys of `object` over `config`; refuses keys the schema does not declare.
  void Apply(const nlohmann::json& object, Config& config, std::string context = "config") const {
    const JsonFields f(object, std::move(context), path_);
    std::vector<std::string> names;
    for (const auto& k : keys_) names.push_back(k.name);
    f.OnlyKeys(names);
    for (const auto& k : keys_) k.read(f, config);
  }

  nlohmann::json ToJson(const Config& config) const {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& k : keys_) out[k.name] = k.write(config);
    return out;
  }

  // Each key's own range; checks across keys are the caller's.
  void Check(const Config& config) const {
    for (const auto& k : keys_) k.check(config);
  }

  const std::vector<Key>& keys() const { return keys_; }

  static std::string FirstFlag(const std::string& flag) { return flag.substr(0, flag.find(',')); }

 private:
  std::string path_;
  std::vector<Key> keys_;
};

}  // namespace outpost
