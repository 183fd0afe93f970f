// The pure parts of local chat and the router: sampling, stop strings, streaming restore and
// decode, the routing policy, the difficulty estimate, the circuit breaker and the budget.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <thread>

#include "chat_fuzz_input.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "llm/chat_template.h"
#include "llm/circuit_breaker.h"
#include "llm/generator.h"
#include "llm/redaction.h"
#include "llm/router.h"
#include "llm/sampler.h"
#include "llm/tokenizer.h"

namespace outpost {
namespace {

TEST(Sampler, GreedyPicksTheLargestLogit) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p);
  std::vector<float> logits{0.1f, 3.0f, -1.0f, 2.9f};
  EXPECT_EQ(s.Next(logits, {}), 1);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.0f;
  Sampler s(p);
  std::vector<float> logits{3.0f, 2.0f, -1.0f};
  std::vector<int32_t> seen{0, 2};
  EXPECT_EQ(s.Next(logits, seen), 1);  // 3 -> 1.5 drops below 2
  EXPECT_FLOAT_EQ(logits[0], 1.5f);
  EXPECT_FLOAT_EQ(logits[2], -2.0f);
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  std::vector<float> base{0.0f, 1.0f, 5.0f, 4.9f};
  for (int trial = 0; trial < 50; ++trial) {
    SamplingParams k;
    k.top_k = 1;
    k.seed = trial;
    auto l1 = base;
    EXPECT_EQ(Sampler(k).Next(l1, {}), 2);
    SamplingParams q;
    q.top_p = 0.01f;
    q.seed = trial;
    auto l2 = base;
    EXPECT_EQ(Sampler(q).Next(l2, {}), 2);
  }
}

TEST(Sampler, MinPDropsUnlikelyTokensAndSeedsRepeat) {
  std::vector<float> base(1000, -10.0f);
  base[7] = 5.0f;
  base[8] = 5.0f;  // two equally likely, everything else far below min_p
  std::map<int32_t, int> counts;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    SamplingParams p;
    p.min_p = 0.1f;
    p.seed = seed;
    auto l = base;
    counts[Sampler(p).Next(l, {})]++;
  }
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_GT(counts[7], 50);
  EXPECT_GT(counts[8], 50);
  SamplingParams p;
  p.seed = 42;
  auto a = base, b = base;
  EXPECT_EQ(Sampler(p).Next(a, {}), Sampler(p).Next(b, {}));
}

TEST(Sampler, TemperatureFollowsTheDistribution) {
  // logits log(1), log(3): expect about 25 % / 75 %.
  int ones = 0;
  for (uint64_t seed = 0; seed < 4000; ++seed) {
    SamplingParams p;
    p.seed = seed;
    std::vector<float> l{0.0f, std::log(3.0f)};
    ones += Sampler(p).Next(l, {}) == 1;
  }
  EXPECT_NEAR(ones / 4000.0, 0.75, 0.03);
}

TEST(LogProbs, AreALogSoftmax) {
  std::vector<float> l{1.0f, 2.0f, 3.0f};
  double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(LogProb(l, 2), 3.0 - std::log(z), 1e-5);
  auto top = TopLogProbs(l, 2);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].first, 2);
  EXPECT_EQ(top[1].first, 1);
}

TEST(StopStringFilter, HoldsBackPossiblePrefixesAndCutsAtTheStop) {
  StopStringFilter f({"STOP", "\n\n"});
  std::string out;
  for (const char* piece : {"Hel", "lo S", "T", "OP and more"}) out += f.Push(piece);
  EXPECT_TRUE(f.stopped());
  EXPECT_EQ(out, "Hello ");
  StopStringFilter g({"STOP"});
  std::string all = g.Push("ST");
  all += g.Push("ART");
  all += g.Finish();
  EXPECT_FALSE(g.stopped());
  EXPECT_EQ(all, "START");
  StopStringFilter none({});
  EXPECT_EQ(none.Push("abc"), "abc");
}

TEST(StopStringFilter, NeverSplitsAUtf8Character) {
  StopStringFilter f({"xyz"});
  std::string out = f.Push("é");  // two bytes; the hold-back of 2 must not cut inside
  out += f.Finish();
  EXPECT_EQ(out, "é");
}

TEST(StreamingRestorer, RestoresPlaceholdersSplitAcrossPieces) {
  Redactor r;
  Redaction red = r.Redact("mail a.b@example.com now");
  ASSERT_EQ(red.text, "mail [EMAIL_1] now");
  StreamingRestorer s(red);
  std::string out;
  for (const char* piece : {"Sure, [EM", "AIL", "_1", "] and [not a placeholder", "] [X"})
    out += s.Push(piece);
  out += s.Finish();
  EXPECT_EQ(out, "Sure, a.b@example.com and [not a placeholder] [X");
}

TEST(StreamDecoder, ConcatenationEqualsTheWholeDecode) {
  auto t = outpost_fuzz::MakeFuzzTokenizer(false);
  const std::string text = "the thing: é, 日本, 👍🏽 <|im_start|> done";
  auto ids = t->Encode(text);
  StreamDecoder d(*t);
  std::string streamed;
  for (int32_t id : ids) {
    std::string piece = d.Push(id);
    EXPECT_FALSE(IsIncompleteUtf8(piece)) << "a piece ends inside a character";
    streamed += piece;
  }
  streamed += d.Flush();
  EXPECT_EQ(streamed, t->Decode(ids));
}

TEST(Tokenizer, RefusesWhatItCannotRead) {
  auto bad = [](const std::string& json, const std::string& message) {
    try {
      Tokenizer::FromJson(json);
      ADD_FAILURE() << "accepted: " << json;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  };
  bad("{", "tokenizer.json");
  bad(R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})", "unsupported model type");
  bad(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})",
      "outside the vocabulary");
  bad(R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Nope"}})",
      "unsupported pre_tokenizer 'Nope'");
  bad(R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Split",
      "pattern": {"Regex": "("}, "behavior": "Isolated"}})",
      "bad regex");
}

TEST(ChatTemplate, DetectsFamiliesAndRefusesUnknownOnes) {
  EXPECT_EQ(DetectChatTemplate("{{'<|im_start|>' + m}}", "", "").format, ChatFormat::kChatML);
  EXPECT_EQ(DetectChatTemplate("<|start_header_id|>", "", "").format, ChatFormat::kLlama3);
  EXPECT_EQ(DetectChatTemplate("<start_of_turn>", "", "").format, ChatFormat::kGemma);
  EXPECT_EQ(DetectChatTemplate("<|user|> <|end|>", "", "").format, ChatFormat::kPhi3);
  EXPECT_EQ(DetectChatTemplate("[INST]", "", "").format, ChatFormat::kMistral);
  EXPECT_THROW(DetectChatTemplate("{{ messages }}", "", ""), Error);
  EXPECT_THROW(NamedChatTemplate("alpaca", "", ""), Error);
  auto t = NamedChatTemplate("chatml", "", "");
  EXPECT_THROW(RenderChat(t, {}, true), Error);
  EXPECT_THROW(RenderChat(t, {{"wizard", "x"}}, true), Error);
  EXPECT_EQ(RenderChat(t, {{"user", "hi"}}, true),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

RouteInputs Routine() {
  RouteInputs in;
  in.has_local = true;
  in.prompt_tokens = 100;
  in.local_context = 2048;
  in.cloud_configured = true;
  in.cloud_allowed = true;
  return in;
}

TEST(Router, EveryReason) {
  RouterConfig c;
  auto decide = [&](RouteInputs in) {
    auto d = DecideRoute(c, in);
    return std::string(RouteName(d.route)) + ":" + d.reason;
  };
  EXPECT_EQ(decide(Routine()), "local:routine");
  auto in = Routine();
  in.difficulty = 0.9;
  EXPECT_EQ(decide(in), "cloud:difficult");
  in.cloud_allowed = false;
  EXPECT_EQ(decide(in), "local:cloud_unavailable");
  in = Routine();
  in.prompt_tokens = 5000;
  EXPECT_EQ(decide(in), "cloud:context_exceeds_local");
  in.budget_left = false;
  EXPECT_EQ(decide(in), "refuse:cloud_budget_exhausted");
  // The caller's credential: no cloud scope, or its own budget spent.
  in.budget_left = true;
  in.caller_may_use_cloud = false;
  EXPECT_EQ(decide(in), "refuse:cloud_not_permitted");
  in.caller_may_use_cloud = true;
  in.caller_budget_left = false;
  EXPECT_EQ(decide(in), "refuse:key_budget_exhausted");
  in = Routine();
  in.max_tokens = 2000;
  EXPECT_EQ(decide(in), "cloud:max_tokens_exceeds_local");
  in = Routine();
  in.private_request = true;
  in.difficulty = 1;
  EXPECT_EQ(decide(in), "local:private");
  in.prompt_tokens = 5000;
  EXPECT_EQ(decide(in), "refuse:private");
  in = Routine();
  in.forced = "cloud";
  EXPECT_EQ(decide(in), "cloud:forced_cloud");
  in.forced = "local";
  in.difficulty = 1;
  EXPECT_EQ(decide(in), "local:forced_local");
  in = Routine();
  in.has_local = false;
  EXPECT_EQ(decide(in), "cloud:no_local_model");
  in.cloud_configured = false;
  EXPECT_EQ(decide(in), "refuse:cloud_not_configured");
  c.prefer = "cloud";
  EXPECT_EQ(decide(Routine()), "cloud:preferred_cloud");
}

TEST(Router, DifficultyRisesWithCodeMathsAndSteps) {
  auto score = [](const std::string& text, int tokens = 20) {
    return EstimateDifficulty({{"user", text}}, tokens).score;
  };
  EXPECT_LT(score("What time is it?"), 0.2);
  EXPECT_GE(score("Refactor this:\n```\ndef f(x):\n  return x\n```"), 0.3);
  EXPECT_GE(score("Prove the theorem and solve for x: x^2 = 2*y/3"), 0.3);
  EXPECT_GE(score("First, analyze the logs. Then compare them step by step. Finally explain why."),
            0.3);
  EXPECT_GE(score("hi", 2000), 0.35);
  EXPECT_LE(score("prove integral ``` def class step by step then finally ? ? ? =>", 3000), 1.0);
}

TEST(Router, ConfigRefusesCredentialsInHeadersAndBadValues) {
  nlohmann::json cloud = {
      {"url", "https://x/v1"}, {"model", "m"}, {"headers", {{"Authorization", "Bearer k"}}}};
  EXPECT_THROW(ParseRouterConfig(nullptr, cloud), Error);
  EXPECT_THROW(ParseRouterConfig({{"prefer", "moon"}}, nullptr), Error);
  EXPECT_THROW(ParseRouterConfig({{"bogus", 1}}, nullptr), Error);
  EXPECT_THROW(ParseRouterConfig(nullptr, {{"url", "ftp://x"}, {"model", "m"}}), Error);
  auto c =
      ParseRouterConfig({{"difficulty_threshold", 0.4}}, {{"url", "https://x/v1"}, {"model", "m"}});
  EXPECT_TRUE(c.cloud_enabled());
  EXPECT_DOUBLE_EQ(c.difficulty_threshold, 0.4);
}

TEST(Router, ConfigErrorsNameTheKeyWhereItSits) {
  auto message = [](const nlohmann::json& router, const nlohmann::json& cloud) {
    try {
      ParseRouterConfig(router, cloud);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message({{"prefer", "moon"}}, nullptr).find("chat_router.prefer"), std::string::npos);
  EXPECT_NE(
      message({{"difficulty_threshold", 1.5}}, nullptr).find("chat_router.difficulty_threshold"),
      std::string::npos);
  EXPECT_NE(message(nullptr, {{"retries", 11}}).find("chat_cloud.retries must be 0..10"),
            std::string::npos);
  EXPECT_NE(message(nullptr, {{"timeout_ms", "soon"}}).find("chat_cloud.timeout_ms"),
            std::string::npos);
  EXPECT_NE(message({{"redaction_rules", {{{"kind", "regex"}}}}}, nullptr)
                .find("chat_router.redaction_rules[0]"),
            std::string::npos);
  auto c = ParseRouterConfig({{"redaction_rules", {{{"kind", "TICKET"}, {"pattern", "T-[0-9]+"}}}}},
                             {{"headers", {{"X-Org", "acme"}}}});
  ASSERT_EQ(c.redaction_rules.size(), 1u);
  EXPECT_EQ(c.cloud.headers, (std::vector<std::pair<std::string, std::string>>{{"X-Org", "acme"}}));
}

TEST(CircuitBreaker, OpensHalfOpensAndCloses) {
  CircuitBreaker b(2, std::chrono::milliseconds(50));
  EXPECT_TRUE(b.Allow());
  b.Failure();
  EXPECT_EQ(b.state(), CircuitBreaker::State::kClosed);
  b.Failure();
  EXPECT_EQ(b.state(), CircuitBreaker::State::kOpen);
  EXPECT_FALSE(b.Allow());
  std::this_thread::sleep_for(std::chrono::milliseconds(70));
  EXPECT_EQ(b.state(), CircuitBreaker::State::kHalfOpen);
  EXPECT_TRUE(b.Allow());   // the one trial
  EXPECT_FALSE(b.Allow());  // nobody else while it is out
  b.Failure();
  EXPECT_EQ(b.state(), CircuitBreaker::State::kOpen);
  std::this_thread::sleep_for(std::chrono::milliseconds(70));
  EXPECT_TRUE(b.Allow());
  b.Success();
  EXPECT_EQ(b.state(), CircuitBreaker::State::kClosed);
  EXPECT_TRUE(b.Allow());
}

TEST(CloudBudget, CountsTheDayAndSurvivesRestarts) {
  auto dir =
      std::filesystem::temp_directory_path() / ("outpost-budget-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  {
    CloudBudget b(dir, 100);
    EXPECT_TRUE(b.HasRoom());
    b.Spend(60);
    EXPECT_TRUE(b.HasRoom());
    b.Spend(50);
    EXPECT_FALSE(b.HasRoom());
  }
  CloudBudget again(dir, 100);
  EXPECT_EQ(again.SpentToday(), 110u);
  EXPECT_FALSE(again.HasRoom());
  WriteFileAtomically(dir / "cloud_budget.json", "{garbage");
  CloudBudget damaged(dir, 100);
  EXPECT_FALSE(damaged.HasRoom()) << "a damaged record must not unlock spending";
  CloudBudget unlimited(dir, 0);
  EXPECT_TRUE(unlimited.HasRoom());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace outpost
