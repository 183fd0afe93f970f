#include "auth/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <memory>
#include <mutex>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/names.h"

namespace outpost::auth {
namespace {

using json = nlohmann::json;
using Digest = std::array<unsigned char, 32>;

constexpr std::string_view kPrefix = "opk_";
constexpr size_t kIdHexChars = 12;
constexpr size_t kSecretBytes = 32;
constexpr size_t kKeyChars = kPrefix.size() + kIdHexChars + 1 + kSecretBytes * 2;

std::string Hex(const unsigned char* p, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 0xf];
  }
  return out;
}

bool IsLowerHex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

bool FromHex(std::string_view s, unsigned char* out, size_t n) {
  if (s.size() != n * 2 || !IsLowerHex(s)) return false;
  auto v = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (size_t i = 0; i < n; ++i)
    out[i] = static_cast<unsigned char>(v(s[2 * i]) << 4 | v(s[2 * i + 1]));
  return true;
}

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1)
    Fail(ErrorCode::kInternal, "no random bytes for an API key");
  std::string out = Hex(buf.data(), buf.size());
  OPENSSL_cleanse(buf.data(), buf.size());
  return out;
}

// SHA-256 of the secret's 32 bytes (one block). The algorithm is fetched once and each thread
// keeps its context: OpenSSL 3's one-shot SHA256() looks the algorithm up on every call, which
// costs more than the hash.
Digest HashOf(std::string_view secret_hex) {
  unsigned char raw[kSecretBytes];
  Digest d{};
  if (!FromHex(secret_hex, raw, sizeof raw)) return d;  // the caller checked the shape
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  thread_local std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                           EVP_MD_CTX_free);
  unsigned int n = 0;
  if (!md || !ctx || EVP_DigestInit_ex2(ctx.get(), md, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), raw, sizeof raw) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), d.data(), &n) != 1)
    Fail(ErrorCode::kInternal, "SHA-256 is not available");
  OPENSSL_cleanse(raw, sizeof raw);
  return d;
}

// A presented key split into id and secret; false when it is not shaped like one.
bool SplitKey(std::string_view key, std::string_view& id, std::string_view& secret) {
  if (key.size() != kKeyChars || key.substr(0, kPrefix.size()) != kPrefix ||
      key[kPrefix.size() + kIdHexChars] != '_')
    return false;
  id = key.substr(kPrefix.size(), kIdHexChars);
  secret = key.substr(kPrefix.size() + kIdHexChars + 1);
  return IsLowerHex(id) && IsLowerHex(secret);
}

std::string Today() { return FormatLocalNow("%Y-%m-%d"); }

// Ids are accepted with or without the "opk_" of the key they come from.
std::string_view BareId(std::string_view id) {
  if (id.substr(0, kPrefix.size()) == kPrefix) id.remove_prefix(kPrefix.size());
  return id;
}

}  // namespace

struct ApiKeyStore::Record {
  ApiKeyInfo info;
  Digest hash{};
};

bool IsApiKeyShaped(std::string_view presented) {
  return presented.substr(0, kPrefix.size()) == kPrefix;
}

std::string KeyIdOf(std::string_view presented) {
  std::string_view id, secret;
  if (!SplitKey(presented, id, secret)) return "";
  return std::string(kPrefix) + std::string(id);
}

ApiKeyStore::ApiKeyStore(std::filesystem::path dir) : dir_(std::move(dir)) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec)
    Fail(ErrorCode::kFailedPrecondition,
         "cannot create the API key directory " + dir_.string() + ": " + ec.message());
  ::chmod(dir_.c_str(), 0700);
  const auto file = dir_ / "api_keys.json";
  if (!std::filesystem::exists(file)) return;
  RequirePrivateFile(file);
  try {
    const json j = json::parse(ReadFile(file));
    for (const auto& k : j.at("keys")) {
      auto r = std::make_unique<Record>();
      r->info.id = k.at("id").get<std::string>();
      r->info.name = k.value("name", "");
      r->info.scopes = ParseScopes(k.at("scopes").get<std::vector<std::string>>());
      r->info.budget_tokens = k.value("budget_tokens", uint64_t{0});
      r->info.created = k.value("created", "");
      r->info.revoked = k.value("revoked", false);
      r->info.spent_day = k.value("spent_day", "");
      r->info.spent_tokens = k.value("spent_tokens", uint64_t{0});
      if (r->info.id.size() != kIdHexChars || !IsLowerHex(r->info.id) ||
          !FromHex(k.at("sha256").get<std::string>(), r->hash.data(), r->hash.size()))
        Fail(ErrorCode::kInvalidArgument, "a key record has a malformed id or hash");
      records_[r->info.id] = std::move(r);
    }
  } catch (const Error& e) {
    Fail(ErrorCode::kInvalidArgument, file.string() + ": " + e.what());
  } catch (const std::exception& e) {
    Fail(ErrorCode::kInvalidArgument, file.string() + ": " + e.what());
  }
}

ApiKeyStore::~ApiKeyStore() = default;

std::vector<const ApiKeyStore::Record*> ApiKeyStore::SortedLocked() const {
  std::vector<const Record*> out;
  for (const auto& [id, r] : records_) out.push_back(r.get());
  std::sort(out.begin(), out.end(), [](const Record* a, const Record* b) {
    return std::tie(a->info.created, a->info.id) < std::tie(b->info.created, b->info.id);
  });
  return out;
}

void ApiKeyStore::SaveLocked() const {
  json keys = json::array();
  for (const Record* r : SortedLocked()) {
    const ApiKeyInfo& i = r->info;
    keys.push_back({{"id", i.id},
                    {"name", i.name},
                    {"scopes", ScopeNames(i.scopes)},
                    {"budget_tokens", i.budget_tokens},
                    {"created", i.created},
                    {"revoked", i.revoked},
                    {"spent_day", i.spent_day},
                    {"spent_tokens", i.spent_tokens},
                    {"sha256", Hex(r->hash.data(), r->hash.size())}});
  }
  WriteFileAtomically(dir_ / "api_keys.json", json{{"keys", keys}}.dump(1), 0600);
}

ApiKeyStore::Created ApiKeyStore::Create(const std::string& name, Scopes scopes,
                                         uint64_t budget_tokens) {
  if (scopes == kNoScopes) Fail(ErrorCode::kInvalidArgument, "an API key needs a scope");
  if (name.size() > 128) Fail(ErrorCode::kInvalidArgument, "a key name has at most 128 bytes");
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f)
      Fail(ErrorCode::kInvalidArgument, "a key name may not hold control characters");
  std::unique_lock lock(mu_);
  std::string id;
  do {
    id = RandomHex(kIdHexChars / 2);
  } while (records_.count(id));
  std::string secret = RandomHex(kSecretBytes);
  auto r = std::make_unique<Record>();
  r->info = {id, name, scopes, budget_tokens, FormatUtc(std::time(nullptr)), false, "", 0};
  r->hash = HashOf(secret);
  Created out{r->info, std::string(kPrefix) + id + "_" + secret};
  OPENSSL_cleanse(secret.data(), secret.size());
  records_[id] = std::move(r);
  SaveLocked();
  Log(LogSeverity::kInfo, "auth", "key_created",
      fmt::format("API key {}{} ({}) created", kPrefix, id, name),
      {{"key_id", std::string(kPrefix) + id}, {"scopes", ScopeNames(scopes)}});
  return out;
}

void ApiKeyStore::Revoke(const std::string& id) {
  std::unique_lock lock(mu_);
  auto it = records_.find(BareId(id));
  if (it == records_.end()) Fail(ErrorCode::kNotFound, "no API key " + id);
  it->second->info.revoked = true;
  SaveLocked();
  Log(LogSeverity::kWarn, "auth", "key_revoked",
      fmt::format("API key {}{} revoked", kPrefix, it->first),
      {{"key_id", std::string(kPrefix) + it->first}});
}

std::vector<ApiKeyInfo> ApiKeyStore::List() const {
  std::shared_lock lock(mu_);
  std::vector<ApiKeyInfo> out;
  const std::string today = Today();
  for (const Record* r : SortedLocked()) {
    out.push_back(r->info);
    out.back().id = std::string(kPrefix) + r->info.id;
    if (out.back().spent_day != today) out.back().spent_tokens = 0;
  }
  return out;
}

KeyMatch ApiKeyStore::Verify(std::string_view presented) const {
  std::string_view id, secret;
  if (!SplitKey(presented, id, secret)) return {KeyCheck::kMalformed, "", kNoScopes};
  const Digest hash = HashOf(secret);
  std::shared_lock lock(mu_);
  auto it = records_.find(id);
  if (it == records_.end()) return {KeyCheck::kUnknown, "", kNoScopes};
  const Record& r = *it->second;
  if (CRYPTO_memcmp(hash.data(), r.hash.data(), hash.size()) != 0)
    return {KeyCheck::kUnknown, "", kNoScopes};
  if (r.info.revoked) return {KeyCheck::kRevoked, r.info.id, kNoScopes};
  return {KeyCheck::kValid, r.info.id, r.info.scopes};
}

bool ApiKeyStore::HasCloudRoom(const std::string& id) const {
  std::shared_lock lock(mu_);
  auto it = records_.find(BareId(id));
  if (it == records_.end()) return false;
  const ApiKeyInfo& i = it->second->info;
  if (i.budget_tokens == 0) return true;
  return i.spent_day != Today() || i.spent_tokens < i.budget_tokens;
}

void ApiKeyStore::SpendCloud(const std::string& id, uint64_t tokens) {
  std::unique_lock lock(mu_);
  auto it = records_.find(BareId(id));
  if (it == records_.end() || tokens == 0) return;
  ApiKeyInfo& i = it->second->info;
  const std::string today = Today();
  if (i.spent_day != today) {
    i.spent_day = today;
    i.spent_tokens = 0;
  }
  i.spent_tokens += tokens;
  try {
    SaveLocked();
  } catch (const std::exception& e) {
    // Still counted in memory: the budget holds until restart.
    Log(LogSeverity::kWarn, "auth", "budget_not_recorded",
        fmt::format("cannot record the cloud tokens of key {}{}: {}", kPrefix, it->first,
                    e.what()));
  }
}

std::filesystem::path ApiKeyStore::EnsureLocalAdminKey() {
  const auto file = dir_ / "admin.key";
  if (std::filesystem::exists(file)) {
    RequirePrivateFile(file);
    std::string key = ReadFile(file);
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
    const KeyMatch m = Verify(key);
    OPENSSL_cleanse(key.data(), key.size());
    if (m.check == KeyCheck::kValid && m.scopes == kAllScopes) return file;
    Log(LogSeverity::kWarn, "auth", "local_key_replaced",
        "the local admin key in " + file.string() + " is no longer valid; making a new one");
  }
  Created c = Create("local admin (" + file.string() + ")", kAllScopes);
  WriteFileAtomically(file, c.key + "\n", 0600);
  OPENSSL_cleanse(c.key.data(), c.key.size());
  return file;
}

}  // namespace outpost::auth
