// Chat prompts in the formats of the common model families. The family is recognized from
// the Jinja template in tokenizer_config.json (or named in the package manifest); we render
// the format natively instead of interpreting Jinja, matching the reference templates for
// text conversations (tests compare against @huggingface/jinja on the real templates).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace outpost {

struct ChatMessage {
  std::string role;  // system, user, assistant (tool messages are rendered as user turns)
  std::string content;
};

enum class ChatFormat { kChatML, kLlama3, kGemma, kPhi3, kMistral };

struct ChatTemplate {
  ChatFormat format = ChatFormat::kChatML;
  std::string bos_token, eos_token;
  // Pieces some templates add on their own: ChatML's default system prompt (Qwen), Llama
  // 3.1+'s "Cutting Knowledge Date" header, Mistral's spaced [INST] form.
  std::string default_system;
  bool knowledge_date_header = false;
  bool today_from_clock = false;  // Llama 3.2 asks strftime_now; 3.1 says "26 Jul 2024"
  bool mistral_spaced = false;
  // The tokens that end an assistant turn in this format (besides the model's EOS ids).
  std::vector<std::string> stop_tokens;
};

// Recognizes a family from a Jinja chat template; throws Error(kInvalidArgument) when none.
ChatTemplate DetectChatTemplate(std::string_view jinja, std::string bos, std::string eos);
// "chatml", "llama3", "gemma", "phi3", "mistral"; throws for another name.
ChatTemplate NamedChatTemplate(std::string_view name, std::string bos, std::string eos);
std::string_view ChatFormatName(ChatFormat format);

// Throws Error(kInvalidArgument) for a conversation the format cannot express (no messages,
// an unknown role).
std::string RenderChat(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                       bool add_generation_prompt, std::string_view today = "");

}  // namespace outpost
