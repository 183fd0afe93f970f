#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "auth/api_keys.h"
#include "auth/authorizer.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "temp_dir.h"

namespace outpost::auth {
namespace {

namespace fs = std::filesystem;

unsigned ModeOf(const fs::path& p) {
  struct stat st {};
  ::stat(p.c_str(), &st);
  return st.st_mode & 0777;
}

TEST(ApiKeys, CreatedKeysVerifyWithTheirScopesAndSurviveAReopen) {
  TempDir dir;
  std::string key;
  {
    ApiKeyStore store(dir.path() / "auth");
    auto c = store.Create("ci", Scope::kInference | Scope::kChat);
    key = c.key;
    EXPECT_EQ(key.rfind("opk_" + c.info.id + "_", 0), 0u);
    const KeyMatch m = store.Verify(key);
    EXPECT_EQ(m.check, KeyCheck::kValid);
    EXPECT_EQ(m.scopes, Scope::kInference | Scope::kChat);
  }
  EXPECT_EQ(ModeOf(dir.path() / "auth"), 0700u);
  EXPECT_EQ(ModeOf(dir.path() / "auth" / "api_keys.json"), 0600u);
  // Only the hash is stored: the secret is nowhere on disk.
  const std::string records = ReadFile(dir.path() / "auth" / "api_keys.json");
  EXPECT_EQ(records.find(key.substr(17)), std::string::npos);
  ApiKeyStore reopened(dir.path() / "auth");
  EXPECT_EQ(reopened.Verify(key).check, KeyCheck::kValid);
}

TEST(ApiKeys, WrongRevokedAndMalformedKeysAreTold) {
  TempDir dir;
  ApiKeyStore store(dir.path());
  auto c = store.Create("x", static_cast<Scopes>(Scope::kAdmin));
  std::string wrong = c.key;
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  EXPECT_EQ(store.Verify(wrong).check, KeyCheck::kUnknown);
  EXPECT_EQ(store.Verify("opk_short").check, KeyCheck::kMalformed);
  EXPECT_EQ(store.Verify(c.key.substr(0, c.key.size() - 1)).check, KeyCheck::kMalformed);
  EXPECT_EQ(store.Verify("").check, KeyCheck::kMalformed);
  store.Revoke("opk_" + c.info.id);
  EXPECT_EQ(store.Verify(c.key).check, KeyCheck::kRevoked);
  EXPECT_EQ(ApiKeyStore(dir.path()).Verify(c.key).check, KeyCheck::kRevoked);
  EXPECT_THROW(store.Revoke("opk_000000000000"), Error);
  EXPECT_THROW(store.Create("none", kNoScopes), Error);
  EXPECT_THROW(store.Create("bad\nname", kAllScopes), Error);
}

TEST(ApiKeys, RecordsOpenToOthersAreRefused) {
  TempDir dir;
  { ApiKeyStore(dir.path()).Create("x", kAllScopes); }
  ::chmod((dir.path() / "api_keys.json").c_str(), 0644);
  EXPECT_THROW(ApiKeyStore{dir.path()}, Error);
}

TEST(ApiKeys, CloudBudgetPerKeyPerDay) {
  TempDir dir;
  ApiKeyStore store(dir.path());
  auto limited = store.Create("limited", Scope::kChat | Scope::kCloud, 100);
  auto open = store.Create("open", Scope::kChat | Scope::kCloud);
  EXPECT_TRUE(store.HasCloudRoom(limited.info.id));
  store.SpendCloud("opk_" + limited.info.id, 60);
  EXPECT_TRUE(store.HasCloudRoom(limited.info.id));
  store.SpendCloud(limited.info.id, 60);
  EXPECT_FALSE(store.HasCloudRoom("opk_" + limited.info.id));
  store.SpendCloud(open.info.id, 1000000);
  EXPECT_TRUE(store.HasCloudRoom(open.info.id));
  // Spent stays spent across a restart.
  EXPECT_FALSE(ApiKeyStore(dir.path()).HasCloudRoom(limited.info.id));
  for (const auto& k : store.List()) {
    if (k.id == "opk_" + limited.info.id) {
      EXPECT_EQ(k.spent_tokens, 120u);
    }
  }
}

TEST(ApiKeys, TheLocalAdminKeyIsMadeOnceAndReplacedWhenRevoked) {
  TempDir dir;
  ApiKeyStore store(dir.path());
  const fs::path file = store.EnsureLocalAdminKey();
  EXPECT_EQ(ModeOf(file), 0600u);
  std::string key = ReadFile(file);
  key.pop_back();  // newline
  EXPECT_EQ(store.Verify(key).scopes, kAllScopes);
  store.EnsureLocalAdminKey();
  EXPECT_EQ(ReadFile(file), key + "\n");  // kept while valid
  store.Revoke(KeyIdOf(key));
  ApiKeyStore reopened(dir.path());
  reopened.EnsureLocalAdminKey();
  std::string fresh = ReadFile(file);
  fresh.pop_back();
  EXPECT_NE(fresh, key);
  EXPECT_EQ(reopened.Verify(fresh).check, KeyCheck::kValid);
}

TEST(Authorizer, TheMatrixOfCredentialsAndScopes) {
  TempDir dir;
  ApiKeyStore store(dir.path());
  const std::string inference = store.Create("i", static_cast<Scopes>(Scope::kInference)).key;
  const auto revoked = store.Create("r", kAllScopes);
  store.Revoke(revoked.info.id);
  const Scopes loopback_open = Scope::kInference | Scope::kChat | Scope::kObserve;
  const Scopes admin = static_cast<Scopes>(Scope::kAdmin);
  const Scopes infer = static_cast<Scopes>(Scope::kInference);
  auto status = [&](std::string_view bearer, Scopes open, Scopes accepted) {
    const Decision d = Authorize(&store, PresentedKey(bearer, ""), open, accepted);
    if (d.allowed) return 200;
    return d.code == ErrorCode::kUnauthenticated ? 401 : 403;
  };
  const std::string right = "Bearer " + inference;
  // None, wrong, revoked, wrong scope, right.
  EXPECT_EQ(status("", loopback_open, infer), 200);
  EXPECT_EQ(status("", kNoScopes, infer), 401);
  EXPECT_EQ(status("", loopback_open, admin), 401);
  EXPECT_EQ(status("Bearer opk_000000000000_00", loopback_open, infer), 401);
  EXPECT_EQ(status("Bearer " + revoked.key, loopback_open, infer), 401);
  EXPECT_EQ(status(right, loopback_open, admin), 403);
  EXPECT_EQ(status(right, kNoScopes, infer), 200);
  EXPECT_EQ(status("bearer   " + inference + " ", kNoScopes, infer), 200);
  // Tokens that are not ours count as none: an OpenAI SDK's placeholder key on loopback.
  EXPECT_EQ(status("Bearer sk-placeholder", loopback_open, infer), 200);
  EXPECT_EQ(status("Bearer sk-placeholder", kNoScopes, infer), 401);
  EXPECT_EQ(status("Basic dXNlcjpwYXNz", loopback_open, admin), 401);
  // X-Api-Key, and two different keys at once.
  EXPECT_TRUE(Authorize(&store, PresentedKey("", inference), kNoScopes, infer).allowed);
  EXPECT_FALSE(Authorize(&store, PresentedKey(right, revoked.key), loopback_open, infer).allowed);
  const Decision d = Authorize(&store, PresentedKey(right, ""), kNoScopes, admin);
  EXPECT_NE(d.message.find("lacks the 'admin' scope"), std::string::npos) << d.message;
}

TEST(Authorizer, LoopbackAddresses) {
  for (const char* a : {"127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"})
    EXPECT_TRUE(IsLoopbackAddress(a)) << a;
  for (const char* a : {"0.0.0.0", "::", "10.0.0.1", "192.168.1.1", "example.com", ""})
    EXPECT_FALSE(IsLoopbackAddress(a)) << a;
}

TEST(Scopes, NamesRoundTripAndUnknownOnesAreRefused) {
  EXPECT_EQ(ParseScopes({"inference", "admin"}), Scope::kInference | Scope::kAdmin);
  EXPECT_EQ(ScopeNames(kAllScopes),
            (std::vector<std::string>{"inference", "chat", "cloud", "admin", "observe"}));
  EXPECT_THROW(ParseScope("root"), Error);
}

}  // namespace
}  // namespace outpost::auth
