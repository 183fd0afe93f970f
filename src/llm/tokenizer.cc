#include "llm/tokenizer.h"

#include <algorithm>
#include <queue>

#include "core/error.h"
#include "llm/text_pieces.h"

namespace outpost {
namespace {

using json = nlohmann::json;

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

size_t Utf8CharLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

bool IsWordChar(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }
bool IsSpace(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// transformers' clean_up_tokenization: no space before punctuation and English contractions.
std::string CleanUpSpaces(std::string text) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (auto [from, to] : kRules) {
    std::string out;
    std::string_view f(from);
    size_t start = 0, pos;
    while ((pos = text.find(f, start)) != std::string::npos) {
      out.append(text, start, pos - start).append(to);
      start = pos + f.size();
    }
    out.append(text, start);
    text = std::move(out);
  }
  return text;
}

// The ids of the post-processor's single-sequence template around the text ("A").
void ReadTemplate(const json& post, std::vector<int32_t>& prefix, std::vector<int32_t>& suffix,
                  const std::function<int32_t(const std::string&)>& id_of) {
  if (post.is_null()) return;
  const std::string type = post.value("type", "");
  if (type == "Sequence") {
    for (const auto& p : post.at("processors")) ReadTemplate(p, prefix, suffix, id_of);
    return;
  }
  if (type == "TemplateProcessing") {
    bool seen_sequence = false;
    for (const auto& piece : post.at("single")) {
      if (piece.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      const std::string name = piece.at("SpecialToken").at("id").get<std::string>();
      std::vector<int32_t> ids;
      const auto& specials = post.value("special_tokens", json::object());
      if (specials.contains(name))
        ids = specials.at(name).at("ids").get<std::vector<int32_t>>();
      else
        ids = {id_of(name)};
      auto& into = seen_sequence ? suffix : prefix;
      into.insert(into.end(), ids.begin(), ids.end());
    }
    return;
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    prefix.push_back(post.at("cls").at(1).get<int32_t>());
    suffix.push_back(post.at("sep").at(1).get<int32_t>());
    return;
  }
  if (type == "ByteLevel") return;  // offsets only
  Fail(ErrorCode::kInvalidArgument, "tokenizer: unsupported post_processor '" + type + "'");
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::FromJson(std::string_view tokenizer_json,
                                               const json& config) {
  std::unique_ptr<Tokenizer> t(new Tokenizer);
  try {
    const json j = json::parse(tokenizer_json);
    const json& model = j.at("model");
    const std::string type = model.value("type", "BPE");
    if (type != "BPE")
      Fail(ErrorCode::kInvalidArgument,
           "tokenizer: unsupported model type '" + type + "' (BPE is supported)");
    if (!model.value("dropout", json()).is_null() && model.at("dropout").get<double>() > 0)
      Fail(ErrorCode::kInvalidArgument, "tokenizer: BPE dropout is for training, not serving");

    int32_t max_id = -1;
    for (const auto& [token, id] : model.at("vocab").items()) {
      t->vocab_.emplace(token, id.get<int32_t>());
      max_id = std::max(max_id, id.get<int32_t>());
    }
    for (const auto& a : j.value("added_tokens", json::array())) {
      AddedToken token{a.at("content").get<std::string>(), a.at("id").get<int32_t>(),
                       a.value("special", false),          a.value("lstrip", false),
                       a.value("rstrip", false),           a.value("single_word", false)};
      if (token.content.empty() || token.id < 0) continue;
      max_id = std::max(max_id, token.id);
      t->added_by_content_[token.content] = token.id;
      t->added_.push_back(std::move(token));
    }
    if (max_id < 0) Fail(ErrorCode::kInvalidArgument, "tokenizer: empty vocabulary");
    t->id_to_token_.resize(static_cast<size_t>(max_id) + 1);
    t->special_.resize(t->id_to_token_.size());
    for (const auto& [token, id] : t->vocab_) t->id_to_token_[static_cast<size_t>(id)] = token;
    for (const auto& a : t->added_) {
      t->id_to_token_[static_cast<size_t>(a.id)] = a.content;
      t->special_[static_cast<size_t>(a.id)] = a.special;
    }
    std::stable_sort(t->added_.begin(), t->added_.end(),
                     [](const AddedToken& a, const AddedToken& b) {
                       return a.content.size() > b.content.size();
                     });
    if (t->added_.size() > 65535)
      Fail(ErrorCode::kInvalidArgument, "tokenizer: too many added tokens");
    t->added_by_first_byte_.resize(256);
    for (size_t k = 0; k < t->added_.size(); ++k)
      t->added_by_first_byte_[static_cast<unsigned char>(t->added_[k].content[0])].push_back(
          static_cast<uint16_t>(k));

    t->byte_fallback_ = model.value("byte_fallback", false);
    t->fuse_unk_ = model.value("fuse_unk", false);
    t->ignore_merges_ = model.value("ignore_merges", false);
    if (model.contains("continuing_subword_prefix") &&
        model.at("continuing_subword_prefix").is_string())
      t->continuing_prefix_ = model.at("continuing_subword_prefix").get<std::string>();
    if (model.contains("end_of_word_suffix") && model.at("end_of_word_suffix").is_string())
      t->end_of_word_suffix_ = model.at("end_of_word_suffix").get<std::string>();
    if (model.contains("unk_token") && model.at("unk_token").is_string()) {
      auto unk = t->TokenId(model.at("unk_token").get<std::string>());
      if (!unk) Fail(ErrorCode::kInvalidArgument, "tokenizer: unk_token is not in the vocabulary");
      t->unk_id_ = *unk;
    }

    int32_t rank = 0;
    const size_t prefix_len = t->continuing_prefix_.size();
    for (const auto& m : model.value("merges", json::array())) {
      std::string a, b;
      if (m.is_array()) {
        a = m.at(0).get<std::string>();
        b = m.at(1).get<std::string>();
      } else {
        const std::string s = m.get<std::string>();
        size_t space = s.find(' ');
        if (space == std::string::npos)
          Fail(ErrorCode::kInvalidArgument, "tokenizer: merge '" + s + "' is not two tokens");
        a = s.substr(0, space);
        b = s.substr(space + 1);
      }
      auto ia = t->vocab_.find(a), ib = t->vocab_.find(b);
      std::string merged = a + (b.size() >= prefix_len ? b.substr(prefix_len) : b);
      auto im = t->vocab_.find(merged);
      if (ia == t->vocab_.end() || ib == t->vocab_.end() || im == t->vocab_.end())
        Fail(ErrorCode::kInvalidArgument,
             "tokenizer: merge '" + a + " " + b + "' uses a token outside the vocabulary");
      t->merges_.emplace(PairKey(ia->second, ib->second), Merge{rank++, im->second});
    }

    t->normalizer_ = MakeNormalizer(j.value("normalizer", json()));
    t->pre_tokenizer_ = MakePreTokenizer(j.value("pre_tokenizer", json()));
    t->decoder_ = MakeDecoder(j.value("decoder", json()));
    const json decoder = j.value("decoder", json());
    if (decoder.is_object()) {
      t->byte_level_ = decoder.value("type", "") == "ByteLevel";
      for (const auto& d : decoder.value("decoders", json::array()))
        t->byte_level_ = t->byte_level_ || d.value("type", "") == "ByteLevel";
    }
    ReadTemplate(j.value("post_processor", json()), t->prefix_ids_, t->suffix_ids_,
                 [&](const std::string& name) {
                   auto id = t->TokenId(name);
                   if (!id)
                     Fail(ErrorCode::kInvalidArgument,
                          "tokenizer: post-processor token '" + name + "' is unknown");
                   return *id;
                 });
    if (config.is_object())
      t->clean_up_spaces_ = config.value("clean_up_tokenization_spaces", false);
  } catch (const json::exception& e) {
    Fail(ErrorCode::kInvalidArgument, std::string("tokenizer.json: ") + e.what());
  }
  return t;
}

std::optional<int32_t> Tokenizer::TokenId(std::string_view token) const {
  auto a = added_by_content_.find(std::string(token));
  if (a != added_by_content_.end()) return a->second;
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::TokenText(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return "";
  return id_to_token_[static_cast<size_t>(id)];
}

std::string Tokenizer::TokenBytes(int32_t id) const {
  std::string token = TokenText(id);
  if (added_by_content_.count(token)) return token;
  if (byte_level_) return ByteLevelDecode(token);
  if (token.size() == 6 && token.compare(0, 3, "<0x") == 0 && token[5] == '>')
    return std::string(1, static_cast<char>(std::stoi(token.substr(3, 2), nullptr, 16)));
  std::string out;
  for (size_t i = 0; i < token.size(); ++i) {
    if (token.compare(i, 3, "\xE2\x96\x81") == 0) {  // SentencePiece's space
      out += ' ';
      i += 2;
    } else {
      out += token[i];
    }
  }
  return out;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < special_.size() && special_[static_cast<size_t>(id)];
}

void Tokenizer::EncodeWord(const std::string& word, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    int prev, next;
  };
  std::vector<Symbol> symbols;
  std::optional<int32_t> pending_unk;  // fuse_unk joins runs of unknown characters
  auto add = [&](int32_t id) {
    int index = static_cast<int>(symbols.size());
    symbols.push_back({id, index - 1, index + 1});
  };
  for (size_t i = 0; i < word.size();) {
    size_t n = std::min(Utf8CharLength(static_cast<unsigned char>(word[i])), word.size() - i);
    std::string piece = word.substr(i, n);
    if (i > 0) piece.insert(0, continuing_prefix_);
    if (i + n == word.size()) piece += end_of_word_suffix_;
    i += n;
    auto it = vocab_.find(piece);
    if (it != vocab_.end()) {
      if (pending_unk) add(*std::exchange(pending_unk, std::nullopt));
      add(it->second);
      continue;
    }
    if (byte_fallback_) {
      std::vector<int32_t> bytes;
      for (size_t k = i - n; k < i; ++k) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", static_cast<unsigned char>(word[k]));
        auto b = vocab_.find(name);
        if (b == vocab_.end()) break;
        bytes.push_back(b->second);
      }
      if (bytes.size() == n) {
        if (pending_unk) add(*std::exchange(pending_unk, std::nullopt));
        for (int32_t b : bytes) add(b);
        continue;
      }
    }
    if (!unk_id_) continue;  // no unknown token: the character is dropped, as the reference does
    if (pending_unk && !fuse_unk_) add(*pending_unk);
    pending_unk = *unk_id_;
  }
  if (pending_unk) add(*pending_unk);
  if (symbols.empty()) return;
  symbols.back().next = -1;

  // Lowest-ranked pair first, leftmost among equals; stale queue entries are skipped.
  struct Candidate {
    int32_t rank;
    int left;
    int32_t left_id, right_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int left) {
    if (left < 0 || symbols[static_cast<size_t>(left)].next < 0) return;
    const auto& l = symbols[static_cast<size_t>(left)];
    const auto& r = symbols[static_cast<size_t>(l.next)];
    auto m = merges_.find(PairKey(l.id, r.id));
    if (m != merges_.end()) queue.push({m->second.rank, left, l.id, r.id});
  };
  for (int i = 0; i < static_cast<int>(symbols.size()); ++i) consider(i);
  while (!queue.empty()) {
    Candidate c = queue.top();
    queue.pop();
    auto& l = symbols[static_cast<size_t>(c.left)];
    if (l.id != c.left_id || l.next < 0) continue;  // merged away or changed since
    auto& r = symbols[static_cast<size_t>(l.next)];
    if (r.id != c.right_id) continue;
    l.id = merges_.at(PairKey(c.left_id, c.right_id)).merged;
    r.id = -1;  // removed
    l.next = r.next;
    if (r.next >= 0) symbols[static_cast<size_t>(r.next)].prev = c.left;
    consider(l.prev);
    consider(c.left);
  }
  for (int i = 0; i >= 0; i = symbols[static_cast<size_t>(i)].next)
    out.push_back(symbols[static_cast<size_t>(i)].id);
}

void Tokenizer::EncodeText(std::string_view text, bool first, std::vector<int32_t>& out) const {
  std::string normalized(text);
  if (normalizer_) normalizer_->Apply(normalized);
  if (normalized.empty()) return;
  std::vector<std::string> pieces{normalized};
  if (pre_tokenizer_) pre_tokenizer_->Apply(pieces, first);
  for (const auto& p : pieces) EncodeWord(p, out);
}

std::vector<int32_t> Tokenizer::Encode(std::string_view raw, bool add_special_tokens) const {
  const std::string text = SanitizeUtf8(raw);
  std::vector<int32_t> out;
  if (add_special_tokens) out = prefix_ids_;

  // Added tokens are found in the raw text first, longest match at each position.
  size_t segment_start = 0, i = 0;
  while (i < text.size()) {
    const AddedToken* found = nullptr;
    for (uint16_t k : added_by_first_byte_[static_cast<unsigned char>(text[i])]) {
      const AddedToken& a = added_[k];
      if (text.compare(i, a.content.size(), a.content) != 0) continue;
      if (a.single_word) {
        size_t end = i + a.content.size();
        if ((i > 0 && IsWordChar(static_cast<unsigned char>(text[i - 1]))) ||
            (end < text.size() && IsWordChar(static_cast<unsigned char>(text[end]))))
          continue;
      }
      found = &a;
      break;
    }
    if (!found) {
      i += Utf8CharLength(static_cast<unsigned char>(text[i]));
      continue;
    }
    size_t begin = i, end = i + found->content.size();
    if (found->lstrip)
      while (begin > segment_start && IsSpace(static_cast<unsigned char>(text[begin - 1]))) --begin;
    if (found->rstrip)
      while (end < text.size() && IsSpace(static_cast<unsigned char>(text[end]))) ++end;
    if (begin > segment_start)
      EncodeText(std::string_view(text).substr(segment_start, begin - segment_start),
                 segment_start == 0, out);
    out.push_back(found->id);
    segment_start = i = end;
  }
  if (segment_start < text.size())
    EncodeText(std::string_view(text).substr(segment_start), segment_start == 0, out);

  if (add_special_tokens) out.insert(out.end(), suffix_ids_.begin(), suffix_ids_.end());
  return out;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) continue;
    if (skip_special_tokens && special_[static_cast<size_t>(id)]) continue;
    tokens.push_back(id_to_token_[static_cast<size_t>(id)]);
  }
  std::string text;
  if (decoder_) {
    decoder_->Apply(tokens);
    for (const auto& t : tokens) text += t;
  } else {
    for (size_t k = 0; k < tokens.size(); ++k) text += (k ? " " : "") + tokens[k];
  }
  return clean_up_spaces_ ? CleanUpSpaces(std::move(text)) : text;
}

std::string StreamDecoder::Push(int32_t id) {
  ids_.push_back(id);
  std::span<const int32_t> all(ids_);
  std::string before = tokenizer_.Decode(all.subspan(prefix_, read_ - prefix_));
  std::string now = tokenizer_.Decode(all.subspan(prefix_));
  // A trailing U+FFFD is a character still being spelled out byte by byte.
  if (now.size() <= before.size() ||
      (now.size() >= 3 && now.compare(now.size() - 3, 3, "\xEF\xBF\xBD") == 0))
    return "";
  prefix_ = read_;
  read_ = ids_.size();
  return now.substr(before.size());
}

std::string StreamDecoder::Flush() {
  std::span<const int32_t> all(ids_);
  std::string before = tokenizer_.Decode(all.subspan(prefix_, read_ - prefix_));
  std::string now = tokenizer_.Decode(all.subspan(prefix_));
  prefix_ = read_ = ids_.size();
  return now.size() > before.size() ? now.substr(before.size()) : "";
}

}  // namespace outpost
