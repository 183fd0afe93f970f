// A Hugging Face `tokenizer.json` reader and BPE tokenizer: byte-level BPE (GPT-2, Llama 3,
// Qwen, Mistral's Tekken) and SentencePiece-style BPE with byte fallback (Llama 2, Gemma,
// Phi-3), with added and special tokens split out first, as the reference tokenizers do.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace outpost {

class Normalizer;
class PreTokenizer;
class Decoder;

class Tokenizer {
 public:
  // `tokenizer_json` is the file's text; `config` (tokenizer_config.json, may be null) gives
  // clean_up_tokenization_spaces. Throws Error(kInvalidArgument) for what it cannot read.
  static std::unique_ptr<Tokenizer> FromJson(std::string_view tokenizer_json,
                                             const nlohmann::json& config = nullptr);
  ~Tokenizer();

  // `add_special_tokens` applies the post-processor's template (a BOS, usually); chat prompts
  // carry their own and pass false.
  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens = false) const;
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens = true) const;

  std::optional<int32_t> TokenId(std::string_view token) const;
  std::string TokenText(int32_t id) const;  // "" for an unknown id
  // The bytes a token stands for (byte-level symbols and <0xNN> tokens undone).
  std::string TokenBytes(int32_t id) const;
  bool IsSpecial(int32_t id) const;
  size_t VocabSize() const { return id_to_token_.size(); }

 private:
  struct AddedToken {
    std::string content;
    int32_t id;
    bool special, lstrip, rstrip, single_word;
  };
  struct Merge {
    int32_t rank;
    int32_t merged;
  };
  Tokenizer();
  void EncodeWord(const std::string& word, std::vector<int32_t>& out) const;
  void EncodeText(std::string_view text, bool first, std::vector<int32_t>& out) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> special_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::vector<AddedToken> added_;                           // longest first
  std::vector<std::vector<uint16_t>> added_by_first_byte_;  // indexes into added_, longest first
  std::unordered_map<std::string, int32_t> added_by_content_;
  std::optional<int32_t> unk_id_;
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  bool clean_up_spaces_ = false;
  bool byte_level_ = false;  // the decoder maps GPT-2's byte symbols back
  std::string continuing_prefix_, end_of_word_suffix_;
  std::vector<int32_t> prefix_ids_, suffix_ids_;  // the post-processor's single template
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<Decoder> decoder_;
};

// Turns generated ids into text as they come, holding back bytes that do not yet form whole
// UTF-8 characters (and, through the decoder, context such as a leading-space rule).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  // Appends `id` and returns the new text it completes (often "", sometimes several chars).
  std::string Push(int32_t id);
  // What is still held back, decoded as it stands (U+FFFD for a cut-off character).
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  std::vector<int32_t> ids_;
  size_t prefix_ = 0, read_ = 0;
};

}  // namespace outpost
