#include "llm/chat_template.h"

#include "core/error.h"
#include "core/names.h"

namespace outpost {
namespace {

bool Has(std::string_view text, std::string_view needle) {
  return text.find(needle) != std::string_view::npos;
}

std::string Trim(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return std::string(s);
}

// Unescapes a Jinja string literal's \n and \' (enough for the default prompts we lift).
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      char c = s[++i];
      out += c == 'n' ? '\n' : c;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Qwen-style templates write a default system turn as a literal:
// '<|im_start|>system\nYou are ...<|im_end|>\n'
std::string ChatMLDefaultSystem(std::string_view jinja) {
  const std::string_view open = "<|im_start|>system\\n";
  for (size_t at = jinja.find(open); at != std::string_view::npos; at = jinja.find(open, at + 1)) {
    size_t start = at + open.size();
    size_t end = jinja.find("<|im_end|>", start);
    if (end == std::string_view::npos) break;
    std::string_view body = jinja.substr(start, end - start);
    if (body.find_first_of("'\"{}") == std::string_view::npos) return Unescape(body);
  }
  return "";
}

void CheckRole(const ChatMessage& m) {
  if (m.role != "system" && m.role != "user" && m.role != "assistant" && m.role != "tool" &&
      m.role != "developer")
    Fail(ErrorCode::kInvalidArgument, "unknown message role '" + m.role + "'");
}

// System-like roles first (OpenAI's "developer" is a system message), tool results as user.
std::string Role(const ChatMessage& m) {
  if (m.role == "developer") return "system";
  if (m.role == "tool") return "user";
  return m.role;
}

std::string RenderChatML(const ChatTemplate& t, const std::vector<ChatMessage>& msgs) {
  std::string out;
  if (Role(msgs[0]) != "system" && !t.default_system.empty())
    out += "<|im_start|>system\n" + t.default_system + "<|im_end|>\n";
  for (const auto& m : msgs) out += "<|im_start|>" + Role(m) + "\n" + m.content + "<|im_end|>\n";
  return out;
}

std::string RenderLlama3(const ChatTemplate& t, const std::vector<ChatMessage>& msgs,
                         std::string_view today) {
  std::string out = t.bos_token;
  size_t first = 0;
  if (t.knowledge_date_header) {
    std::string system;
    if (Role(msgs[0]) == "system") {
      system = Trim(msgs[0].content);
      first = 1;
    }
    std::string date = !today.empty()
                           ? std::string(today)
                           : (t.today_from_clock ? FormatLocalNow("%d %b %Y") : "26 Jul 2024");
    out +=
        "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December "
        "2023\nToday Date: " +
        date + "\n\n" + system + "<|eot_id|>";
  }
  for (size_t i = first; i < msgs.size(); ++i)
    out += "<|start_header_id|>" + Role(msgs[i]) + "<|end_header_id|>\n\n" + Trim(msgs[i].content) +
           "<|eot_id|>";
  return out;
}

std::string RenderGemma(const ChatTemplate& t, const std::vector<ChatMessage>& msgs) {
  std::string out = t.bos_token, prefix;
  size_t first = 0;
  if (Role(msgs[0]) == "system") {
    prefix = msgs[0].content + "\n\n";
    first = 1;
  }
  for (size_t i = first; i < msgs.size(); ++i) {
    std::string role = Role(msgs[i]) == "assistant" ? "model" : Role(msgs[i]);
    if (role == "system") role = "user";
    out += "<start_of_turn>" + role + "\n" + (i == first ? prefix : "") + Trim(msgs[i].content) +
           "<end_of_turn>\n";
  }
  return out;
}

std::string RenderPhi3(const ChatTemplate&, const std::vector<ChatMessage>& msgs) {
  std::string out;
  for (const auto& m : msgs) out += "<|" + Role(m) + "|>\n" + m.content + "<|end|>\n";
  return out;
}

std::string RenderMistral(const ChatTemplate& t, const std::vector<ChatMessage>& msgs) {
  std::string system;
  size_t first = 0;
  if (Role(msgs[0]) == "system") {
    system = msgs[0].content;
    first = 1;
  }
  size_t last_user = msgs.size();
  for (size_t i = first; i < msgs.size(); ++i)
    if (Role(msgs[i]) == "user") last_user = i;
  std::string out = t.bos_token;
  for (size_t i = first; i < msgs.size(); ++i) {
    const std::string role = Role(msgs[i]);
    if (role == "user") {
      std::string content = msgs[i].content;
      if (i == last_user && first == 1) content = system + "\n\n" + content;
      out += t.mistral_spaced ? "[INST] " + content + " [/INST]" : "[INST]" + content + "[/INST]";
    } else if (role == "assistant") {
      out += (t.mistral_spaced ? " " : "") + msgs[i].content + t.eos_token;
    } else {
      Fail(ErrorCode::kInvalidArgument,
           "this model's chat format has no place for a second '" + role + "' message");
    }
  }
  return out;
}

ChatTemplate Make(ChatFormat f, std::string bos, std::string eos) {
  ChatTemplate t;
  t.format = f;
  t.bos_token = std::move(bos);
  t.eos_token = std::move(eos);
  switch (f) {
    case ChatFormat::kChatML:
      t.stop_tokens = {"<|im_end|>"};
      break;
    case ChatFormat::kLlama3:
      t.stop_tokens = {"<|eot_id|>", "<|eom_id|>"};
      break;
    case ChatFormat::kGemma:
      t.stop_tokens = {"<end_of_turn>"};
      break;
    case ChatFormat::kPhi3:
      t.stop_tokens = {"<|end|>"};
      break;
    case ChatFormat::kMistral:
      break;
  }
  return t;
}

}  // namespace

std::string_view ChatFormatName(ChatFormat format) {
  switch (format) {
    case ChatFormat::kChatML:
      return "chatml";
    case ChatFormat::kLlama3:
      return "llama3";
    case ChatFormat::kGemma:
      return "gemma";
    case ChatFormat::kPhi3:
      return "phi3";
    case ChatFormat::kMistral:
      return "mistral";
  }
  return "?";
}

ChatTemplate NamedChatTemplate(std::string_view name, std::string bos, std::string eos) {
  for (auto f : {ChatFormat::kChatML, ChatFormat::kLlama3, ChatFormat::kGemma, ChatFormat::kPhi3,
                 ChatFormat::kMistral})
    if (ChatFormatName(f) == name) return Make(f, std::move(bos), std::move(eos));
  Fail(ErrorCode::kInvalidArgument,
       "unknown chat format '" + std::string(name) + "' (chatml, llama3, gemma, phi3, mistral)");
}

ChatTemplate DetectChatTemplate(std::string_view jinja, std::string bos, std::string eos) {
  ChatTemplate t;
  if (Has(jinja, "<|im_start|>")) {
    t = Make(ChatFormat::kChatML, bos, eos);
    t.default_system = ChatMLDefaultSystem(jinja);
  } else if (Has(jinja, "<|start_header_id|>")) {
    t = Make(ChatFormat::kLlama3, bos, eos);
    t.knowledge_date_header = Has(jinja, "Cutting Knowledge Date");
    t.today_from_clock = Has(jinja, "strftime_now");
  } else if (Has(jinja, "<start_of_turn>")) {
    t = Make(ChatFormat::kGemma, bos, eos);
  } else if (Has(jinja, "<|user|>") && Has(jinja, "<|end|>")) {
    t = Make(ChatFormat::kPhi3, bos, eos);
  } else if (Has(jinja, "[INST]")) {
    t = Make(ChatFormat::kMistral, bos, eos);
    t.mistral_spaced = Has(jinja, "[INST] ");
  } else {
    Fail(ErrorCode::kInvalidArgument,
         "the chat template is of no known family (ChatML, Llama 3, Gemma, Phi-3, Mistral); "
         "name one with \"chat_format\" in the manifest");
  }
  return t;
}

std::string RenderChat(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                       bool add_generation_prompt, std::string_view today) {
  if (messages.empty()) Fail(ErrorCode::kInvalidArgument, "'messages' is empty");
  for (const auto& m : messages) CheckRole(m);
  std::string out;
  switch (t.format) {
    case ChatFormat::kChatML:
      out = RenderChatML(t, messages);
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      break;
    case ChatFormat::kLlama3:
      out = RenderLlama3(t, messages, today);
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case ChatFormat::kGemma:
      out = RenderGemma(t, messages);
      if (add_generation_prompt) out += "<start_of_turn>model\n";
      break;
    case ChatFormat::kPhi3:
      out = RenderPhi3(t, messages);
      out += add_generation_prompt ? "<|assistant|>\n" : t.eos_token;
      break;
    case ChatFormat::kMistral:
      out = RenderMistral(t, messages);
      break;
  }
  return out;
}

}  // namespace outpost
