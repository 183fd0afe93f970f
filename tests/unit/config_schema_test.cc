// core/config_schema and the agent's schema: one declaration per key reads the file, prints,
// checks ranges and takes flags, and every key survives a round trip through all of them.
#include "core/config_schema.h"

#include <gtest/gtest.h>

#include "serving/agent_config.h"

namespace outpost {
namespace {

struct Sample {
  int port = 80;
  double ratio = 0.5;
  bool on = true;
  std::string mode = "a";
  std::string token;
  std::filesystem::path dir = "/d";
  std::vector<std::string> list;
  nlohmann::json extra = nlohmann::json::object();
};

ConfigSchema<Sample> SampleSchema() {
  using O = ConfigSchema<Sample>::Options;
  ConfigSchema<Sample> s;
  s.Add("port", &Sample::port, "a port", O{.min = 0, .max = 65535})
      .Add("ratio", &Sample::ratio, "a ratio", O{.min = 0, .max = 1})
      .Add("on", &Sample::on, "a switch")
      .Add("mode", &Sample::mode, "a mode", O{.flag = "--mode,-m", .one_of = {"a", "b"}})
      .Add("token", &Sample::token, "a secret", O{.secret = true})
      .Add("dir", &Sample::dir, "a path")
      .Add("list", &Sample::list, "some names")
      .Add("extra", &Sample::extra, "an object");
  return s;
}

std::string Refusal(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return e.what();
  }
  return "";
}

TEST(ConfigSchema, ReadsTypedKeysAndRefusesUnknownOnes) {
  auto schema = SampleSchema();
  Sample s;
  schema.Apply(nlohmann::json::parse(
                   R"({"port": 8080, "ratio": 0.25, "on": false, "mode": "b", "token": "t",
                       "dir": "/x", "list": ["p", "q"], "extra": {"k": 1}})"),
               s);
  EXPECT_EQ(s.port, 8080);
  EXPECT_EQ(s.ratio, 0.25);
  EXPECT_FALSE(s.on);
  EXPECT_EQ(s.mode, "b");
  EXPECT_EQ(s.token, "t");
  EXPECT_EQ(s.dir, "/x");
  EXPECT_EQ(s.list, (std::vector<std::string>{"p", "q"}));
  EXPECT_EQ(s.extra["k"], 1);
  EXPECT_EQ(Refusal([&] { schema.Apply(nlohmann::json::parse(R"({"prot": 1})"), s); }),
            "config: unknown field 'prot'");
  EXPECT_EQ(Refusal([&] { schema.Apply(nlohmann::json::parse(R"({"port": "x"})"), s); }),
            "config: 'port' must be an integer");
  // What was given before a refusal is all that is read: absent keys keep their values.
  Sample untouched;
  schema.Apply(nlohmann::json::object(), untouched);
  EXPECT_EQ(untouched.port, 80);
}

TEST(ConfigSchema, PrintsEveryKeyAndHidesSecrets) {
  auto schema = SampleSchema();
  Sample s;
  auto shown = schema.ToJson(s);
  EXPECT_EQ(shown.size(), schema.keys().size());
  EXPECT_EQ(shown["token"], "");
  s.token = "hunter2";
  shown = schema.ToJson(s);
  EXPECT_EQ(shown["token"], "(set)");
  EXPECT_EQ(shown.dump().find("hunter2"), std::string::npos);
  EXPECT_EQ(shown["dir"], "/d");
}

TEST(ConfigSchema, ChecksRangesNamingTheKeyAndItsFlag) {
  auto schema = SampleSchema();
  Sample s;
  schema.Check(s);
  s.port = 70000;
  EXPECT_EQ(Refusal([&] { schema.Check(s); }), "port (--port) must be 0..65535");
  s.port = 1;
  s.ratio = 1.5;
  EXPECT_EQ(Refusal([&] { schema.Check(s); }), "ratio (--ratio) must be 0..1");
  s.ratio = 0;
  s.mode = "c";
  EXPECT_EQ(Refusal([&] { schema.Check(s); }), "mode (--mode) must be one of a, b, not 'c'");
}

TEST(ConfigSchema, FlagsParseTheirWordsOrSayWhy) {
  auto schema = SampleSchema();
  auto key = [&](const std::string& name) -> const ConfigSchema<Sample>::Key& {
    for (const auto& k : schema.keys())
      if (k.name == name) return k;
    throw std::runtime_error("no key " + name);
  };
  EXPECT_EQ(key("port").kind, FlagKind::kValue);
  EXPECT_EQ(key("on").kind, FlagKind::kSwitch);
  EXPECT_EQ(key("list").kind, FlagKind::kRepeated);
  EXPECT_EQ(key("mode").flag, "--mode,-m");
  // Secrets never become flags (argv is world-readable), nor do objects.
  EXPECT_EQ(key("token").kind, FlagKind::kNone);
  EXPECT_EQ(key("extra").kind, FlagKind::kNone);
  Sample s;
  key("port").set_from_flag(s, {"9000"});
  key("ratio").set_from_flag(s, {"0.75"});
  key("on").set_from_flag(s, {"false"});
  key("dir").set_from_flag(s, {"/y"});
  key("list").set_from_flag(s, {"a", "b"});
  EXPECT_EQ(s.port, 9000);
  EXPECT_EQ(s.ratio, 0.75);
  EXPECT_FALSE(s.on);
  EXPECT_EQ(s.dir, "/y");
  EXPECT_EQ(s.list.size(), 2u);
  EXPECT_EQ(Refusal([&] { key("port").set_from_flag(s, {"80x"}); }),
            "--port: '80x' is not an integer");
  EXPECT_EQ(Refusal([&] { key("port").set_from_flag(s, {"99999999999"}); }),
            "--port: 99999999999 is out of range");
  EXPECT_EQ(Refusal([&] { key("ratio").set_from_flag(s, {"nan"}); }),
            "--ratio: 'nan' is not a number");
  EXPECT_EQ(Refusal([&] { key("mode").set_from_flag(s, {"a", "b"}); }), "--mode takes one value");
}

// Every key of the agent's schema reads back what it prints, and its flag takes the printed
// value: a key whose reader, printer or flag disagree with the others fails here.
TEST(AgentConfigSchema, EveryKeyRoundTrips) {
  AgentConfig changed;
  changed.model_repository = "/m";
  changed.http_port = 1234;
  changed.update_jitter = 0.3;
  changed.thread_spinning = false;
  changed.update_pinned_models = {"a"};
  changed.chat_router = {{"prefer", "local"}};
  changed.log_format = "json";
  const auto shown = ToJson(changed);
  AgentConfig read;
  ApplyConfigJson(shown, read);
  EXPECT_EQ(ToJson(read), shown);
  for (const auto& key : AgentConfigSchema().keys()) {
    SCOPED_TRACE(key.name);
    EXPECT_TRUE(shown.contains(key.name));
    AgentConfig flagged;
    const auto& v = shown[key.name];
    switch (key.kind) {
      case FlagKind::kNone:
        continue;
      case FlagKind::kSwitch:
        key.set_from_flag(flagged, {v.get<bool>() ? "true" : "false"});
        break;
      case FlagKind::kRepeated:
        key.set_from_flag(flagged, v.get<std::vector<std::string>>());
        break;
      case FlagKind::kValue:
        key.set_from_flag(flagged, {v.is_string() ? v.get<std::string>() : v.dump()});
        break;
    }
    EXPECT_EQ(ToJson(flagged)[key.name], v);
  }
  CheckAgentConfig(read);
}

TEST(AgentConfigSchema, RulesAcrossKeys) {
  AgentConfig c;
  c.max_inflight_bytes = 1024;
  EXPECT_NE(Refusal([&] { CheckAgentConfig(c); }).find("max_inflight_bytes"), std::string::npos);
  c = AgentConfig{};
  c.fleet_url = "https://fleet";
  EXPECT_NE(Refusal([&] { CheckAgentConfig(c); }).find("fleet_url needs update_url"),
            std::string::npos);
  c = AgentConfig{};
  c.http_threads = 0;
  EXPECT_EQ(Refusal([&] { CheckAgentConfig(c); }), "http_threads (--http-threads) must be 1..1024");
}

}  // namespace
}  // namespace outpost
