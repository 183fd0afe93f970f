#include "tokenize_command.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>

#include "core/atomic_file.h"
#include "llm/chat_template.h"
#include "llm/tokenizer.h"

namespace outpost {
namespace {

using json = nlohmann::json;

struct TokenizeOptions {
  std::string dir;
  std::string text;
  std::string batch;
  std::string chat;
  std::string chat_format;
  std::string today;
  bool special = false;
  bool keep_special = false;
};
TokenizeOptions& Opts() {
  static TokenizeOptions o;
  return o;
}

json Describe(const Tokenizer& t, const std::string& text, const TokenizeOptions& o) {
  auto ids = t.Encode(text, o.special);
  json tokens = json::array();
  for (int32_t id : ids) tokens.push_back(t.TokenText(id));
  return {{"ids", ids}, {"tokens", tokens}, {"decoded", t.Decode(ids, !o.keep_special)}};
}

}  // namespace

void AddTokenizeCommand(CLI::App& app) {
  auto& o = Opts();
  auto* cmd = app.add_subcommand(
      "tokenize", "Token ids of TEXT under a model's tokenizer.json (and the text they decode to)");
  cmd->add_option("--dir", o.dir, "Directory with tokenizer.json (and tokenizer_config.json)")
      ->required();
  cmd->add_option("text", o.text, "Text to tokenize");
  cmd->add_option("--batch", o.batch, "A JSON file holding an array of strings; prints an array");
  cmd->add_option("--chat", o.chat,
                  "A JSON file holding an array of conversations ([{role, content}, ...]): prints "
                  "each one's prompt in the model's chat format, with its ids");
  cmd->add_option("--chat-format", o.chat_format,
                  "chatml, llama3, gemma, phi3 or mistral (default: from the chat template)");
  cmd->add_option("--today", o.today,
                  "The date some formats print (Llama 3.1+), e.g. \"26 Jul 2024\"");
  cmd->add_flag("--special", o.special, "Add the tokenizer's special tokens (BOS, ...)");
  cmd->add_flag("--keep-special", o.keep_special, "Keep special tokens when decoding");
}

int RunTokenizeCommand(CLI::App& app) {
  if (!app.got_subcommand("tokenize")) return -1;
  const auto& o = Opts();
  namespace fs = std::filesystem;
  json config;
  if (fs::exists(fs::path(o.dir) / "tokenizer_config.json"))
    config = json::parse(ReadFile(fs::path(o.dir) / "tokenizer_config.json"));
  auto tokenizer = Tokenizer::FromJson(ReadFile(fs::path(o.dir) / "tokenizer.json"), config);
  if (!o.chat.empty()) {
    auto token = [&](const char* key) -> std::string {
      if (!config.contains(key)) return "";
      const json& v = config.at(key);
      if (v.is_string()) return v.get<std::string>();
      return v.is_object() ? v.value("content", "") : "";
    };
    ChatTemplate t = o.chat_format.empty()
                         ? DetectChatTemplate(config.value("chat_template", ""), token("bos_token"),
                                              token("eos_token"))
                         : NamedChatTemplate(o.chat_format, token("bos_token"), token("eos_token"));
    json out = json::array();
    for (const auto& conversation : json::parse(ReadFile(o.chat))) {
      std::vector<ChatMessage> messages;
      for (const auto& m : conversation)
        messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
      std::string prompt = RenderChat(t, messages, /*add_generation_prompt=*/true, o.today);
      out.push_back({{"prompt", prompt}, {"ids", tokenizer->Encode(prompt)}});
    }
    std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    std::cout << std::flush;
    return 0;
  }
  if (!o.batch.empty()) {
    json out = json::array();
    for (const auto& text : json::parse(ReadFile(o.batch)))
      out.push_back(Describe(*tokenizer, text.get<std::string>(), o));
    std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    return 0;
  }
  std::cout << Describe(*tokenizer, o.text, o).dump(-1, ' ', false, json::error_handler_t::replace)
            << "\n";
  return 0;
}

}  // namespace outpost
