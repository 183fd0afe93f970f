#include "llm/chat_model.h"

#include <chrono>

#include "core/atomic_file.h"
#include "core/error.h"

namespace outpost {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json ReadJson(const fs::path& path, bool required) {
  if (!fs::exists(path)) {
    if (required) Fail(ErrorCode::kInvalidArgument, "no " + path.filename().string());
    return json::object();
  }
  try {
    return json::parse(ReadFile(path));
  } catch (const json::exception& e) {
    Fail(ErrorCode::kInvalidArgument, path.filename().string() + ": " + e.what());
  }
}

// tokenizer_config.json writes special tokens as strings or as {"content": ...} objects.
std::string TokenString(const json& config, const char* key) {
  if (!config.contains(key)) return "";
  const json& v = config.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content")) return v.at("content").get<std::string>();
  return "";
}

// chat_template is one string, or a list of named templates of which "default" is ours.
std::string JinjaTemplate(const json& config) {
  if (!config.contains("chat_template")) return "";
  const json& t = config.at("chat_template");
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array())
    for (const auto& named : t)
      if (named.value("name", "") == "default") return named.value("template", "");
  return "";
}

}  // namespace

bool IsChatModelDir(const fs::path& dir) {
  return fs::exists(dir / "tokenizer.json") && fs::exists(dir / "tokenizer_config.json");
}

ChatModel::ChatModel(const fs::path& model_file, const json& manifest_json,
                     const RuntimeOptions& runtime) {
  const json manifest = manifest_json.is_object() ? manifest_json : json::object();
  const fs::path dir = model_file.parent_path();
  const json tokenizer_config = ReadJson(dir / "tokenizer_config.json", true);
  const json generation = ReadJson(dir / "generation_config.json", false);
  const json config = ReadJson(dir / "config.json", false);
  try {
    tokenizer_ = Tokenizer::FromJson(ReadFile(dir / "tokenizer.json"), tokenizer_config);

    settings_.chat_format = manifest.value("chat_format", "");
    settings_.max_sequences = manifest.value("max_sequences", 4);
    if (settings_.max_sequences < 1)
      Fail(ErrorCode::kInvalidArgument, "manifest: max_sequences must be at least 1");
    limits_.context_length =
        manifest.value("context_length", config.value("max_position_embeddings", 2048));
    if (limits_.context_length < 2)
      Fail(ErrorCode::kInvalidArgument, "manifest: context_length must be at least 2");

    auto& d = settings_.defaults;
    d.temperature =
        generation.value("do_sample", false) ? generation.value("temperature", 1.0f) : 0;
    d.top_k = generation.value("top_k", 0);
    d.top_p = generation.value("top_p", 1.0f);
    d.min_p = generation.value("min_p", 0.0f);
    d.repetition_penalty = generation.value("repetition_penalty", 1.0f);

    const std::string bos = TokenString(tokenizer_config, "bos_token");
    const std::string eos = TokenString(tokenizer_config, "eos_token");
    template_ = settings_.chat_format.empty()
                    ? DetectChatTemplate(JinjaTemplate(tokenizer_config), bos, eos)
                    : NamedChatTemplate(settings_.chat_format, bos, eos);

    auto add_stop = [&](const std::string& token) {
      if (auto id = tokenizer_->TokenId(token)) limits_.stop_ids.insert(*id);
    };
    if (!eos.empty()) add_stop(eos);
    for (const auto& t : template_.stop_tokens) add_stop(t);
    if (generation.contains("eos_token_id")) {
      const json& e = generation.at("eos_token_id");
      if (e.is_number_integer()) limits_.stop_ids.insert(e.get<int32_t>());
      if (e.is_array())
        for (const auto& id : e) limits_.stop_ids.insert(id.get<int32_t>());
    }
    if (limits_.stop_ids.empty())
      Fail(ErrorCode::kInvalidArgument,
           "no end-of-sequence token: set eos_token in tokenizer_config.json or eos_token_id in "
           "generation_config.json");
  } catch (const json::exception& e) {
    Fail(ErrorCode::kInvalidArgument, std::string("chat model settings: ") + e.what());
  }
  decoder_ = std::make_unique<DecoderModel>(model_file, runtime, config);
  if (static_cast<size_t>(decoder_->vocab_size()) < tokenizer_->VocabSize())
    Fail(ErrorCode::kInvalidArgument,
         "the model's vocabulary (" + std::to_string(decoder_->vocab_size()) +
             ") is smaller than the tokenizer's (" + std::to_string(tokenizer_->VocabSize()) + ")");
}

std::string ChatModel::RenderPrompt(const std::vector<ChatMessage>& messages) const {
  return RenderChat(template_, messages, /*add_generation_prompt=*/true);
}

std::vector<int32_t> ChatModel::Tokenize(const std::string& prompt) const {
  return tokenizer_->Encode(prompt, /*add_special_tokens=*/false);
}

GenerationResult ChatModel::Generate(const std::vector<int32_t>& prompt,
                                     const GenerateOptions& options,
                                     const std::function<void(const TextChunk&)>& on_chunk) {
  {
    std::unique_lock lock(mu_);
    while (running_ >= settings_.max_sequences) {
      free_.wait_for(lock, std::chrono::milliseconds(50));
      if (options.cancelled && options.cancelled()) {
        GenerationResult r;
        r.finish_reason = "cancelled";
        r.prompt_tokens = static_cast<int>(prompt.size());
        return r;
      }
    }
    ++running_;
  }
  struct Release {
    ChatModel* m;
    ~Release() {
      std::lock_guard lock(m->mu_);
      --m->running_;
      m->free_.notify_one();
    }
  } release{this};
  return outpost::Generate(*decoder_, *tokenizer_, limits_, prompt, options, on_chunk);
}

}  // namespace outpost
