// A chat model as a package ships it: the ONNX decoder with tokenizer.json,
// tokenizer_config.json, generation_config.json and config.json beside it, plus settings the
// manifest may override (chat_format, context_length, max_sequences).
#pragma once

#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "llm/chat_template.h"
#include "llm/decoder_model.h"
#include "llm/generator.h"
#include "llm/tokenizer.h"

namespace outpost {

struct ChatModelSettings {
  std::string chat_format;  // "": from tokenizer_config.json's chat_template
  int context_length = 0;   // 0: config.json's max_position_embeddings (else 2048)
  int max_sequences = 4;    // generated at once; more wait their turn
  SamplingParams defaults;  // generation_config.json's, for what a request leaves out
};

// True when `dir` holds what a chat model needs besides the ONNX file.
bool IsChatModelDir(const std::filesystem::path& dir);

class ChatModel {
 public:
  // Throws Error(kInvalidArgument) naming the file at fault.
  ChatModel(const std::filesystem::path& model_file, const nlohmann::json& manifest,
            const RuntimeOptions& runtime);

  std::string RenderPrompt(const std::vector<ChatMessage>& messages) const;
  std::vector<int32_t> Tokenize(const std::string& prompt) const;
  // Waits for a free sequence slot (giving up when `options.cancelled` says so), then
  // generates. Throws Error(kInvalidArgument) for a prompt that does not fit.
  GenerationResult Generate(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                            const std::function<void(const TextChunk&)>& on_chunk);

  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const ChatModelSettings& settings() const { return settings_; }
  const ChatTemplate& chat_template() const { return template_; }
  const DecoderModel& decoder() const { return *decoder_; }
  int context_length() const { return limits_.context_length; }

 private:
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<DecoderModel> decoder_;
  ChatTemplate template_;
  ChatModelSettings settings_;
  GenerationLimits limits_;
  std::mutex mu_;
  std::condition_variable free_;
  int running_ = 0;
};

}  // namespace outpost
