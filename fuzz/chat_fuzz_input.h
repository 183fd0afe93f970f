// The chat fuzz input (shared by fuzz/chat_fuzz.cc and the corpus replay test). The first byte
// picks what the rest is:
//   0: a /v1/chat/completions body: parsed, it is a request or an ApiError, nothing else;
//   1: text for a byte-level BPE tokenizer (GPT-2 style);
//   2: text for a SentencePiece-style BPE tokenizer with byte fallback.
// Tokenizing must not crash, and decoding the ids (special tokens kept) must give back the
// text exactly, after invalid UTF-8 is replaced by U+FFFD.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "json_nesting.h"
#include "llm/text_pieces.h"
#include "llm/tokenizer.h"
#include "serving/openai_protocol.h"

namespace outpost_fuzz {

// A small tokenizer.json of each kind: every byte is a symbol, with a few merges and specials.
inline std::unique_ptr<outpost::Tokenizer> MakeFuzzTokenizer(bool sentencepiece) {
  using json = nlohmann::json;
  json vocab = json::object();
  json merges = json::array();
  int next = 0;
  auto add = [&](const std::string& t) {
    if (!vocab.contains(t)) vocab[t] = next++;
  };
  const std::string space = sentencepiece ? "\xE2\x96\x81" : outpost::ByteLevelChar(' ');
  if (sentencepiece) {
    add("<unk>");
    for (int b = 0; b < 256; ++b) {
      char name[8];
      snprintf(name, sizeof name, "<0x%02X>", b);
      add(name);
    }
    for (char c = 'a'; c <= 'z'; ++c) add(std::string(1, c));
    add(space);
  } else {
    for (int b = 0; b < 256; ++b) add(outpost::ByteLevelChar(static_cast<unsigned char>(b)));
  }
  for (const char* w : {"th", "he", "the", "in", "ing"}) {
    std::string word = w;
    std::string a = word.substr(0, word.size() - 1), b = word.substr(word.size() - 1);
    add(a);
    add(b);
    add(word);
    merges.push_back(a + " " + b);
  }
  add(space + "t");
  merges.push_back(space + " t");
  json added = json::array();
  for (const char* s : {"<|im_start|>", "<|im_end|>", "<s>"}) {
    added.push_back({{"id", next}, {"content", s}, {"special", true}});
    vocab[s] = next++;
  }
  json j = {{"added_tokens", added},
            {"model",
             {{"type", "BPE"},
              {"vocab", vocab},
              {"merges", merges},
              {"byte_fallback", sentencepiece},
              {"unk_token", sentencepiece ? json("<unk>") : json(nullptr)}}}};
  if (sentencepiece) {
    j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", space}};
    j["decoder"] = {
        {"type", "Sequence"},
        {"decoders",
         json::array({{{"type", "Replace"}, {"pattern", {{"String", space}}}, {"content", " "}},
                      {{"type", "ByteFallback"}},
                      {{"type", "Fuse"}}})}};
  } else {
    j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
    j["decoder"] = {{"type", "ByteLevel"}};
  }
  return outpost::Tokenizer::FromJson(j.dump());
}

inline void RunChatInput(const uint8_t* data, size_t size) {
  if (size == 0) return;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 3) {
    case 0:
      try {
        outpost::ParseChatCompletionRequest(rest);
        CheckAcceptedNesting(rest, 32);
      } catch (const outpost::ApiError&) {
      }
      return;
    case 1:
    case 2: {
      static const auto byte_level = MakeFuzzTokenizer(false);
      static const auto sentencepiece = MakeFuzzTokenizer(true);
      const auto& t = data[0] % 3 == 1 ? *byte_level : *sentencepiece;
      auto ids = t.Encode(rest);
      if (t.Decode(ids, /*skip_special_tokens=*/false) != outpost::SanitizeUtf8(rest))
        __builtin_trap();
      return;
    }
  }
}

}  // namespace outpost_fuzz
