// One test per TUF threat the OTA issue names, at the metadata level: each refused with its
// own error, and the trusted set unchanged by a refusal.
#include "update/tuf.h"
#include "update/updater.h"

#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "update/tuf_hashes.h"

#include <unistd.h>

#include <filesystem>
#include "package/sha256.h"

namespace outpost::tuf {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

const Clock::time_point kNow = Clock::from_time_t(1'800'000'000);  // 2027-01-15

// A repository in memory: keys per role, and helpers that write each role's metadata.
struct Repo {
  std::map<std::string, std::vector<SigningKey>> keys;
  std::map<std::string, int> threshold = {
      {"root", 1}, {"targets", 1}, {"snapshot", 1}, {"timestamp", 1}};

  Repo() {
    for (const char* role : {"root", "targets", "snapshot", "timestamp"})
      keys[role] = {GenerateSigningKey(role)};
  }

  json RootSigned(int64_t version, Clock::time_point expires = kNow + 365 * 24h) const {
    json k = json::object(), roles = json::object();
    for (const auto& [role, list] : keys) {
      json ids = json::array();
      for (const auto& key : list) {
        k[KeyIdOf(key.pub.public_key)] = KeyJson(key.pub.public_key);
        ids.push_back(KeyIdOf(key.pub.public_key));
      }
      roles[role] = {{"keyids", ids}, {"threshold", threshold.at(role)}};
    }
    return {{"_type", "root"},
            {"spec_version", "1.0.31"},
            {"version", version},
            {"expires", FormatExpiry(expires)},
            {"consistent_snapshot", true},
            {"keys", k},
            {"roles", roles}};
  }

  static std::string Signed(const json& s, const std::vector<const SigningKey*>& by) {
    return SignEnvelope(s, by).dump();
  }
  std::vector<const SigningKey*> All(const std::string& role) const {
    std::vector<const SigningKey*> out;
    for (const auto& k : keys.at(role)) out.push_back(&k);
    return out;
  }

  std::string Root(int64_t version) const { return Signed(RootSigned(version), All("root")); }
  std::string Targets(int64_t version, Clock::time_point expires = kNow + 24h) const {
    json s = {
        {"_type", "targets"},
        {"spec_version", "1.0.31"},
        {"version", version},
        {"expires", FormatExpiry(expires)},
        {"targets",
         {{"model-1.0.0.opkg", {{"length", 42}, {"hashes", {{"sha256", std::string(64, 'a')}}}}}}}};
    return Signed(s, All("targets"));
  }
  std::string Snapshot(int64_t version, int64_t targets_version,
                       const std::string& targets_bytes = "",
                       Clock::time_point expires = kNow + 24h) const {
    json meta = {{"version", targets_version}};
    if (!targets_bytes.empty())
      meta["hashes"] = {{"sha256", Sha256Hex(targets_bytes)}},
      meta["length"] = targets_bytes.size();
    json s = {{"_type", "snapshot"},
              {"spec_version", "1.0.31"},
              {"version", version},
              {"expires", FormatExpiry(expires)},
              {"meta", {{"targets.json", meta}}}};
    return Signed(s, All("snapshot"));
  }
  std::string Timestamp(int64_t version, int64_t snapshot_version,
                        const std::string& snapshot_bytes = "",
                        Clock::time_point expires = kNow + 1h) const {
    json meta = {{"version", snapshot_version}};
    if (!snapshot_bytes.empty())
      meta["hashes"] = {{"sha256", Sha256Hex(snapshot_bytes)}},
      meta["length"] = snapshot_bytes.size();
    json s = {{"_type", "timestamp"},
              {"spec_version", "1.0.31"},
              {"version", version},
              {"expires", FormatExpiry(expires)},
              {"meta", {{"snapshot.json", meta}}}};
    return Signed(s, All("timestamp"));
  }
};

std::string Refusal(const std::function<void()>& f, ErrorCode code = ErrorCode::kPermissionDenied) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "accepted";
  return "";
}

TEST(Tuf, AcceptsAConsistentRepository) {
  Repo r;
  TrustedSet t(r.Root(1), kNow);
  std::string targets = r.Targets(3), snapshot = r.Snapshot(2, 3, targets);
  t.UpdateTimestamp(r.Timestamp(5, 2, snapshot));
  t.UpdateSnapshot(snapshot);
  t.UpdateTargets(targets);
  EXPECT_EQ(t.targets()->targets.at("model-1.0.0.opkg").length, 42u);
}

TEST(Tuf, ArbitraryPackageBadSignature) {
  Repo r;
  TrustedSet t(r.Root(1), kNow);
  std::string targets = r.Targets(3), snapshot = r.Snapshot(2, 3);
  t.UpdateTimestamp(r.Timestamp(5, 2));
  t.UpdateSnapshot(snapshot);
  // Signed by the snapshot key, not a targets key: a forged target list.
  json forged = json::parse(targets);
  std::string canonical = CanonicalJson(forged["signed"]);
  forged["signatures"] = json::array({{{"keyid", KeyIdOf(r.keys["snapshot"][0].pub.public_key)},
                                       {"sig", ToHex(Sign(r.keys["snapshot"][0], canonical))}}});
  EXPECT_NE(Refusal([&] {
              t.UpdateTargets(forged.dump());
            }).find("0 of 1 required signatures from the targets role"),
            std::string::npos);
  // Right key, other bytes.
  json tampered = json::parse(targets);
  tampered["signed"]["targets"]["model-1.0.0.opkg"]["length"] = 43;
  EXPECT_NE(Refusal([&] { t.UpdateTargets(tampered.dump()); }).find("bad signature"),
            std::string::npos);
  EXPECT_EQ(t.targets(), nullptr);
}

TEST(Tuf, RollbackOfEveryRole) {
  Repo r;
  TrustedSet t(r.Root(1), kNow);
  t.UpdateTimestamp(r.Timestamp(5, 2));
  EXPECT_NE(Refusal([&] {
              t.UpdateTimestamp(r.Timestamp(4, 2));
            }).find("older than the trusted 5 (rollback)"),
            std::string::npos);
  EXPECT_NE(Refusal([&] { t.UpdateTimestamp(r.Timestamp(6, 1)); }).find("names snapshot version 1"),
            std::string::npos);
  EXPECT_EQ(t.timestamp()->version, 5);  // unchanged by the refusals
  // The next run: what was accepted before is loaded from the cache first, then the new
  // snapshot may not lower the version of targets.json.
  // An expired timestamp in the cache is refused as the final one, but kept to hold the next
  // one to; likewise a cached snapshot the new timestamp no longer names.
  TrustedSet next(r.Root(1), kNow);
  EXPECT_NE(
      Refusal([&] { next.UpdateTimestamp(r.Timestamp(5, 2, "", kNow - 1h)); }).find("expired at"),
      std::string::npos);
  EXPECT_NE(Refusal([&] { next.UpdateTimestamp(r.Timestamp(4, 2)); }).find("(rollback)"),
            std::string::npos);
  EXPECT_TRUE(next.UpdateTimestamp(r.Timestamp(6, 3)));
  EXPECT_NE(Refusal([&] {
              next.UpdateSnapshot(r.Snapshot(2, 7), /*trusted=*/true);
            }).find("mix-and-match"),
            std::string::npos);
  EXPECT_NE(Refusal([&] {
              next.UpdateSnapshot(r.Snapshot(3, 6));
            }).find("targets.json version 6 is older than the trusted 7"),
            std::string::npos);
  EXPECT_EQ(next.snapshot()->version, 2);
  next.UpdateSnapshot(r.Snapshot(3, 7));
  // Root: a root of the same or an older version.
  TrustedSet t4(r.Root(1), kNow);
  t4.UpdateRoot(r.Root(2));
  EXPECT_NE(Refusal([&] { t4.UpdateRoot(r.Root(2)); }).find("version 2 where 3 was expected"),
            std::string::npos);
  EXPECT_NE(Refusal([&] { t4.UpdateRoot(r.Root(1)); }).find("version 1 where 3 was expected"),
            std::string::npos);
}

TEST(Tuf, IndefiniteFreeze) {
  Repo r;
  TrustedSet t(r.Root(1), kNow);
  EXPECT_NE(
      Refusal([&] { t.UpdateTimestamp(r.Timestamp(5, 2, "", kNow - 1s)); }).find("expired at"),
      std::string::npos);
  // Kept for rollback checks only: no snapshot is loaded under it.
  ASSERT_NE(t.timestamp(), nullptr);
  EXPECT_NE(Refusal([&] { t.UpdateSnapshot(r.Snapshot(2, 3)); }).find("expired at"),
            std::string::npos);
  t.UpdateTimestamp(r.Timestamp(6, 2));
  EXPECT_NE(Refusal([&] { t.UpdateSnapshot(r.Snapshot(2, 3, "", kNow - 1s)); }).find("(freeze)"),
            std::string::npos);
  TrustedSet expired_root(Repo::Signed(r.RootSigned(1, kNow - 1s), r.All("root")), kNow);
  EXPECT_NE(
      Refusal([&] { expired_root.UpdateTimestamp(r.Timestamp(5, 2)); }).find("root v1 expired"),
      std::string::npos);
}

TEST(Tuf, MixAndMatch) {
  Repo r;
  TrustedSet t(r.Root(1), kNow);
  std::string snapshot_v2 = r.Snapshot(2, 3), snapshot_v1 = r.Snapshot(1, 3);
  t.UpdateTimestamp(r.Timestamp(5, 2, snapshot_v2));
  // A validly signed snapshot, but not the one the timestamp vouches for.
  EXPECT_NE(Refusal([&] { t.UpdateSnapshot(snapshot_v1); }).find("mix-and-match"),
            std::string::npos);
  TrustedSet u(r.Root(1), kNow);
  u.UpdateTimestamp(r.Timestamp(5, 2));
  EXPECT_NE(Refusal([&] {
              u.UpdateSnapshot(snapshot_v1);
            }).find("version 1 but the timestamp names 2 (mix-and-match)"),
            std::string::npos);
  u.UpdateSnapshot(snapshot_v2);
  EXPECT_NE(
      Refusal([&] { u.UpdateTargets(r.Targets(2)); }).find("version 2 but the snapshot names 3"),
      std::string::npos);
  // Length declared by the snapshot: more bytes than signed for are refused (endless data).
  TrustedSet v(r.Root(1), kNow);
  std::string targets = r.Targets(3);
  std::string snapshot = r.Snapshot(2, 3, targets);
  v.UpdateTimestamp(r.Timestamp(5, 2, snapshot));
  v.UpdateSnapshot(snapshot);
  EXPECT_NE(Refusal([&] { v.UpdateTargets(targets + " "); }).find("bytes where"),
            std::string::npos);
}

TEST(Tuf, RootRotationAndACompromisedOldKey) {
  Repo r;
  TrustedSet t(r.Root(1), kNow);
  Repo rotated = r;
  rotated.keys["root"] = {GenerateSigningKey("root2")};
  rotated.keys["timestamp"] = {GenerateSigningKey("timestamp2")};
  json v2 = rotated.RootSigned(2);
  // Only the new root key: the trusted (old) root's threshold is not met.
  EXPECT_NE(Refusal([&] {
              t.UpdateRoot(Repo::Signed(v2, rotated.All("root")));
            }).find("by the trusted root's keys"),
            std::string::npos);
  // Only the old key: the new root's own threshold is not met.
  EXPECT_NE(Refusal([&] { t.UpdateRoot(Repo::Signed(v2, r.All("root"))); }).find("by its own keys"),
            std::string::npos);
  std::vector<const SigningKey*> both = {&r.keys["root"][0], &rotated.keys["root"][0]};
  t.UpdateRoot(Repo::Signed(v2, both));
  EXPECT_EQ(t.root().version, 2);
  // The rotated-out timestamp key (say it was stolen) no longer counts.
  EXPECT_NE(Refusal([&] { t.UpdateTimestamp(r.Timestamp(9, 2)); }).find("not a timestamp key"),
            std::string::npos);
  t.UpdateTimestamp(rotated.Timestamp(9, 2));
}

TEST(Tuf, Thresholds) {
  Repo r;
  r.keys["targets"] = {GenerateSigningKey("t1"), GenerateSigningKey("t2"),
                       GenerateSigningKey("t3")};
  r.threshold["targets"] = 2;
  TrustedSet t(r.Root(1), kNow);
  t.UpdateTimestamp(r.Timestamp(1, 1));
  t.UpdateSnapshot(r.Snapshot(1, 1));
  json s = json::parse(r.Targets(1))["signed"];
  // One key twice is still one key.
  // One key's signature twice is refused outright (each key signs once).
  json twice = SignEnvelope(s, {&r.keys["targets"][0]});
  twice["signatures"].push_back(twice["signatures"][0]);
  EXPECT_NE(Refusal([&] { t.UpdateTargets(twice.dump()); }, ErrorCode::kInvalidArgument)
                .find("two signatures by key"),
            std::string::npos);
  EXPECT_NE(Refusal([&] {
              t.UpdateTargets(SignEnvelope(s, {&r.keys["targets"][0]}).dump());
            }).find("1 of 2 required"),
            std::string::npos);
  t.UpdateTargets(
      SignEnvelope(s, std::vector<const SigningKey*>{&r.keys["targets"][0], &r.keys["targets"][2]})
          .dump());
}

TEST(Tuf, MalformedMetadata) {
  Repo r;
  Refusal([&] { TrustedSet t("{", kNow); }, ErrorCode::kInvalidArgument);
  TrustedSet t(r.Root(1), kNow);
  EXPECT_NE(Refusal([&] { t.UpdateTimestamp(r.Targets(1)); }, ErrorCode::kInvalidArgument)
                .find("_type is 'targets'"),
            std::string::npos);
  json bad = json::parse(r.Timestamp(1, 1))["signed"];
  bad["expires"] = "tomorrow";
  std::string resigned = SignEnvelope(bad, r.All("timestamp")).dump();
  EXPECT_NE(Refusal([&] { t.UpdateTimestamp(resigned); }, ErrorCode::kInvalidArgument)
                .find("is not YYYY"),
            std::string::npos);
  // Fields are read only once the signatures hold: an edited, unsigned field is a signature
  // failure.
  json edited = json::parse(r.Timestamp(1, 1));
  edited["signed"]["expires"] = "tomorrow";
  EXPECT_NE(Refusal([&] { t.UpdateTimestamp(edited.dump()); }).find("bad signature"),
            std::string::npos);
}

// A repository as a map of file names, serving at most what the client will accept.
class MapFetcher : public Fetcher {
 public:
  std::map<std::string, std::string> files;
  std::map<std::string, uint64_t> asked;
  std::optional<std::string> Fetch(const std::string& name, uint64_t max_length) override {
    asked[name] = max_length;
    auto it = files.find(name);
    if (it == files.end()) return std::nullopt;
    if (it->second.size() > max_length)
      Fail(ErrorCode::kPermissionDenied, name + ": over " + std::to_string(max_length));
    return it->second;
  }
  void Publish(const Repo& r, int64_t ts, int64_t snap, int64_t targets_version) {
    std::string targets = r.Targets(targets_version),
                snapshot = r.Snapshot(snap, targets_version, targets);
    files[std::to_string(targets_version) + ".targets.json"] = targets;
    files[std::to_string(snap) + ".snapshot.json"] = snapshot;
    files["timestamp.json"] = r.Timestamp(ts, snap, snapshot);
  }
};

struct UpdaterTest : ::testing::Test {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("outpost-tuf-" + std::to_string(::getpid()));
  void SetUp() override { std::filesystem::remove_all(dir); }
  void TearDown() override { std::filesystem::remove_all(dir); }
};

TEST_F(UpdaterTest, RefreshesAndRemembersAcrossRuns) {
  Repo r;
  MapFetcher server;
  server.Publish(r, 5, 2, 3);
  Updater u(dir, server);
  u.Init(r.Root(1));
  EXPECT_NE(Refusal([&] { u.Init(r.Root(1)); }, ErrorCode::kFailedPrecondition)
                .find("already has a trusted root"),
            std::string::npos);
  auto set = u.Refresh(kNow);
  EXPECT_EQ(set.targets()->version, 3);
  EXPECT_TRUE(std::filesystem::exists(dir / "targets.json"));
  // Lengths the client asked for come from what signed metadata says.
  EXPECT_EQ(
      server.asked.at("2.snapshot.json"),
      json::parse(server.files["timestamp.json"])["signed"]["meta"]["snapshot.json"]["length"]);
  // Next run, the server rolls back to older, validly signed metadata: refused, nothing
  // overwritten.
  std::string trusted_timestamp = ReadFile(dir / "timestamp.json");
  server.Publish(r, 4, 1, 2);
  EXPECT_NE(Refusal([&] { u.Refresh(kNow); }).find("older than the trusted 5 (rollback)"),
            std::string::npos);
  EXPECT_EQ(ReadFile(dir / "timestamp.json"), trusted_timestamp);
  // A newer, consistent publication is accepted.
  server.Publish(r, 6, 3, 4);
  EXPECT_EQ(u.Refresh(kNow).targets()->version, 4);
}

TEST_F(UpdaterTest, RootRotationRecoversFromAFastForward) {
  Repo r;
  MapFetcher server;
  server.Publish(r, 5, 2, 3);
  Updater u(dir, server);
  u.Init(r.Root(1));
  u.Refresh(kNow);
  // A stolen timestamp key pushed a huge version to the device...
  server.Publish(r, 1'000'000, 2, 3);
  u.Refresh(kNow);
  // ...so the owners rotate the timestamp key (root v2, signed by old and new root keys) and
  // start over at version 1, which the device must now accept.
  Repo rotated = r;
  rotated.keys["timestamp"] = {GenerateSigningKey("timestamp2")};
  server.files["2.root.json"] = Repo::Signed(rotated.RootSigned(2), r.All("root"));
  server.Publish(rotated, 1, 3, 4);
  auto set = u.Refresh(kNow);
  EXPECT_EQ(set.root().version, 2);
  EXPECT_EQ(set.timestamp()->version, 1);
  EXPECT_EQ(set.targets()->version, 4);
}

TEST_F(UpdaterTest, EndlessDataAndMissingFiles) {
  Repo r;
  MapFetcher server;
  Updater u(dir, server);
  EXPECT_NE(Refusal([&] { u.Refresh(kNow); }, ErrorCode::kFailedPrecondition).find("init first"),
            std::string::npos);
  u.Init(r.Root(1));
  EXPECT_NE(Refusal([&] { u.Refresh(kNow); }, ErrorCode::kUnavailable).find("no timestamp.json"),
            std::string::npos);
  server.Publish(r, 5, 2, 3);
  server.files["timestamp.json"] += std::string(20000, ' ');  // over the 16 KiB timestamp limit
  EXPECT_NE(Refusal([&] { u.Refresh(kNow); }).find("over 16384"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir / "timestamp.json"));
}

// --- keys, canonical JSON and hashes as other TUF implementations write them ------------------

// A key made with OpenSSL: its TUF key object (PEM public key) and a signer.
struct OpenSslKey {
  std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> pkey{nullptr, EVP_PKEY_free};
  std::string keytype, scheme;
  const EVP_MD* md = nullptr;
  bool pss = false;

  static OpenSslKey Ec(const char* curve, const char* scheme, const EVP_MD* md) {
    OpenSslKey k;
    k.pkey.reset(EVP_EC_gen(curve));
    k.keytype = "ecdsa", k.scheme = scheme, k.md = md;
    return k;
  }
  static OpenSslKey Rsa() {
    OpenSslKey k;
    k.pkey.reset(EVP_RSA_gen(2048));
    k.keytype = "rsa", k.scheme = "rsassa-pss-sha256", k.md = EVP_sha256(), k.pss = true;
    return k;
  }
  json Json() const {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, pkey.get());
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<size_t>(n));
    BIO_free(bio);
    return {{"keytype", keytype}, {"scheme", scheme}, {"keyval", {{"public", pem}}}};
  }
  std::string Sign(const std::string& message) const {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX* pctx = nullptr;
    EVP_DigestSignInit(ctx, &pctx, md, nullptr, pkey.get());
    if (pss) {
      EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
    }
    size_t len = 0;
    EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(message.data()),
                   message.size());
    std::string sig(len, '\0');
    EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                   reinterpret_cast<const unsigned char*>(message.data()), message.size());
    EVP_MD_CTX_free(ctx);
    sig.resize(len);
    return sig;
  }
};

TEST(TufKeys, EcdsaRsaAndEd25519VerifyAndRefuseWhatTheyDidNotSign) {
  std::vector<OpenSslKey> keys;
  keys.push_back(OpenSslKey::Ec("P-256", "ecdsa-sha2-nistp256", EVP_sha256()));
  keys.push_back(OpenSslKey::Ec("P-384", "ecdsa-sha2-nistp384", EVP_sha384()));
  keys.push_back(OpenSslKey::Rsa());
  for (const auto& k : keys) {
    Key key = Key::Parse(k.Json(), "test");
    std::string sig = k.Sign("payload");
    EXPECT_TRUE(key.Verify("payload", sig)) << k.scheme;
    EXPECT_FALSE(key.Verify("payloaD", sig)) << k.scheme;
    EXPECT_FALSE(key.Verify("payload", "")) << k.scheme;
    // The long keytype spelling is accepted for ecdsa.
    json spelled = k.Json();
    if (k.keytype == "ecdsa") spelled["keytype"] = k.scheme;
    EXPECT_TRUE(Key::Parse(spelled, "test").Verify("payload", sig)) << k.scheme;
  }
  // A P-384 key under the P-256 scheme, a PEM key under ed25519, an unknown scheme: nothing
  // verifies, nothing throws.
  json mismatched = keys[1].Json();
  mismatched["scheme"] = "ecdsa-sha2-nistp256";
  EXPECT_FALSE(Key::Parse(mismatched, "test").Verify("payload", keys[1].Sign("payload")));
  json unknown = keys[0].Json();
  unknown["scheme"] = "sphincs-shake-256f";
  EXPECT_FALSE(Key::Parse(unknown, "test").Verify("payload", keys[0].Sign("payload")));
  SigningKey ed = GenerateSigningKey("ed");
  Key ed_key = Key::Ed25519(ed.pub.public_key);
  EXPECT_TRUE(ed_key.Verify("payload", outpost::Sign(ed, "payload")));
  EXPECT_FALSE(ed_key.Verify("payload", std::string(64, '\0')));
  EXPECT_THROW(Key::Parse({{"keytype", "ed25519"}, {"scheme", "ed25519"}}, "test"), Error);
}

TEST(TufCanonicalJson, AsSecuresystemslibEncodesIt) {
  // Only '"' and '\' are escaped; control characters and UTF-8 pass through as they are.
  json j = {{"b", "line\nbreak \"q\" back\\slash \x01 caf\xc3\xa9"}, {"a", {1, -2, true, nullptr}}};
  EXPECT_EQ(CanonicalJson(j),
            "{\"a\":[1,-2,true,null],\"b\":\"line\nbreak \\\"q\\\" back\\\\slash \x01 "
            "caf\xc3\xa9\"}");
  // Keys in code point order: "Z" < "a" < "\xc3\xa9".
  EXPECT_EQ(CanonicalJson(json{{"\xc3\xa9", 1}, {"a", 2}, {"Z", 3}}),
            "{\"Z\":3,\"a\":2,\"\xc3\xa9\":1}");
  EXPECT_THROW(CanonicalJson(json{{"x", 1.5}}), Error);
}

TEST(TufHashes, EveryListedAlgorithmMustMatchAndBeKnown) {
  const std::string data = "target file contents";
  std::map<std::string, std::string> all;
  for (const char* alg :
       {"sha224", "sha256", "sha384", "sha512", "blake2b", "blake2b-256", "blake2s"})
    all[alg] = HashHex(alg, data);
  EXPECT_EQ(all["sha256"], Sha256Hex(data));
  EXPECT_EQ(all["blake2b-256"].size(), 64u);
  EXPECT_EQ(all["blake2b"].size(), 128u);
  CheckHashes(data, all, "t");
  auto wrong = all;
  wrong["sha512"][0] = wrong["sha512"][0] == '0' ? '1' : '0';
  EXPECT_NE(Refusal([&] { CheckHashes(data, wrong, "t"); }).find("sha512 differs"),
            std::string::npos);
  EXPECT_NE(Refusal([&] {
              CheckHashes(data, {{"md5-ish", "00"}}, "t");
            }).find("unknown"),
            std::string::npos);
}

// --- delegations ------------------------------------------------------------------------------

// A repository whose top-level targets delegates: "a" (paths "models/*", terminating or not)
// and "b" (every path), each with its own key; "a" delegates on to "a1".
struct DelegatingRepo : Repo {
  std::map<std::string, SigningKey> role_keys;
  std::map<std::string, std::string> files;  // what a server would serve
  bool a_terminating = false;

  DelegatingRepo() {
    for (const char* role : {"a", "a1", "b"}) role_keys.emplace(role, GenerateSigningKey(role));
  }
  json Delegation(const std::vector<std::tuple<std::string, json, bool>>& roles) const {
    json delegated_keys = json::object(), list = json::array();
    for (const auto& [name, paths, terminating] : roles) {
      const auto& k = role_keys.at(name);
      delegated_keys[KeyIdOf(k.pub.public_key)] = KeyJson(k.pub.public_key);
      json r = {{"name", name},
                {"keyids", {KeyIdOf(k.pub.public_key)}},
                {"threshold", 1},
                {"terminating", terminating}};
      r[paths.is_object() ? "path_hash_prefixes" : "paths"] =
          paths.is_object() ? paths["prefixes"] : paths;
      list.push_back(r);
    }
    return {{"keys", delegated_keys}, {"roles", list}};
  }
  static json Role(int64_t version, json targets, json delegations = nullptr) {
    json s = {{"_type", "targets"},
              {"spec_version", "1.0"},
              {"version", version},
              {"expires", FormatExpiry(kNow + 24h)},
              {"targets", targets}};
    if (!delegations.is_null()) s["delegations"] = delegations;
    return s;
  }
  static json Entry(int length) {
    return {{"length", length}, {"hashes", {{"sha256", std::string(64, 'b')}}}};
  }
  void Publish() {
    std::map<std::string, std::string> roles;
    roles["targets"] = Signed(Role(1, {{"top.txt", Entry(1)}},
                                   Delegation({{"a", json::array({"models/*"}), a_terminating},
                                               {"b", json::array({"*", "*/*"}), false}})),
                              All("targets"));
    roles["a"] = Signed(Role(1, {{"models/x.onnx", Entry(2)}, {"other/y", Entry(9)}},
                             Delegation({{"a1", json::array({"models/deep*"}), false}})),
                        {&role_keys.at("a")});
    roles["a1"] = Signed(Role(1, {{"models/deep.onnx", Entry(3)}}), {&role_keys.at("a1")});
    roles["b"] = Signed(Role(1, {{"models/x.onnx", Entry(4)},
                                 {"models/only-b", Entry(5)},
                                 {"models/deep.onnx", Entry(6)}}),
                        {&role_keys.at("b")});
    json meta = json::object();
    for (const auto& [name, bytes] : roles) {
      meta[name + ".json"] = {{"version", 1}};
      files["1." + name + ".json"] = bytes;
    }
    std::string snapshot = Signed({{"_type", "snapshot"},
                                   {"spec_version", "1.0"},
                                   {"version", 1},
                                   {"expires", FormatExpiry(kNow + 24h)},
                                   {"meta", meta}},
                                  All("snapshot"));
    files["1.snapshot.json"] = snapshot;
    files["timestamp.json"] = Timestamp(1, 1, snapshot);
  }
};

struct MapOf : Fetcher {
  const std::map<std::string, std::string>& files;
  std::vector<std::string> asked;
  explicit MapOf(const std::map<std::string, std::string>& f) : files(f) {}
  std::optional<std::string> Fetch(const std::string& name, uint64_t) override {
    asked.push_back(name);
    auto it = files.find(name);
    if (it == files.end()) return std::nullopt;
    return it->second;
  }
};

TEST_F(UpdaterTest, DelegationsAreSearchedInOrderWithinTheirPaths) {
  DelegatingRepo r;
  r.Publish();
  MapOf server(r.files);
  Updater u(dir, server);
  u.Init(r.Root(1));
  u.Refresh(kNow);
  // Nothing delegated is fetched until a lookup needs it.
  EXPECT_EQ(std::count(server.asked.begin(), server.asked.end(), "1.a.json"), 0);
  EXPECT_EQ(u.FindTarget("top.txt")->length, 1u);
  EXPECT_EQ(u.FindTarget("models/x.onnx")->length, 2u);     // a before b
  EXPECT_EQ(u.FindTarget("models/deep.onnx")->length, 3u);  // a, then a's a1, before b
  EXPECT_EQ(u.FindTarget("models/only-b")->length, 5u);     // a has none: b
  EXPECT_FALSE(u.FindTarget("other/y"));  // listed by a, but outside a's paths: b has none
  EXPECT_FALSE(u.FindTarget("nothing"));
  EXPECT_TRUE(std::filesystem::exists(dir / "a1.json"));
  // The listing answers each path as a lookup would.
  std::map<std::string, uint64_t> all;
  for (const auto& [path, info] : u.AllTargets()) all[path] = info.length;
  EXPECT_EQ(
      all,
      (std::map<std::string, uint64_t>{
          {"models/deep.onnx", 3}, {"models/only-b", 5}, {"models/x.onnx", 2}, {"top.txt", 1}}));
  // A terminating delegation: nothing past "a" for the paths it covers.
  DelegatingRepo t;
  t.a_terminating = true;
  t.Publish();
  MapOf server2(t.files);
  std::filesystem::remove_all(dir);
  Updater u2(dir, server2);
  u2.Init(t.Root(1));
  u2.Refresh(kNow);
  EXPECT_FALSE(u2.FindTarget("models/only-b"));
  EXPECT_EQ(u2.FindTarget("models/deep.onnx")->length, 3u);
}

TEST(TufDelegations, PathPatternsHashPrefixesAndSuccinctBins) {
  DelegatedRole r;
  r.paths = std::vector<std::string>{"models/*.onnx", "a/?/c", "x/[0-9]*"};
  EXPECT_TRUE(r.IsDelegatedPath("models/m.onnx"));
  EXPECT_FALSE(r.IsDelegatedPath("models/sub/m.onnx"));  // '*' stays within a segment
  EXPECT_TRUE(r.IsDelegatedPath("a/b/c"));
  EXPECT_FALSE(r.IsDelegatedPath("a/bb/c"));
  EXPECT_TRUE(r.IsDelegatedPath("x/7z"));
  DelegatedRole h;
  const std::string hash = Sha256Hex("file.txt");
  h.path_hash_prefixes = std::vector<std::string>{hash.substr(0, 2)};
  EXPECT_TRUE(h.IsDelegatedPath("file.txt"));
  SuccinctRoles s;
  s.bit_length = 10;
  s.name_prefix = "bin";
  // The bin is the first 10 bits of the path's sha256, named with 3 hex digits.
  const std::string raw = FromHex(hash, "hash");
  unsigned bin = ((unsigned(uint8_t(raw[0])) << 8) | uint8_t(raw[1])) >> 6;
  char name[16];
  std::snprintf(name, sizeof name, "bin-%03x", bin);
  EXPECT_EQ(s.RoleFor("file.txt"), name);
  EXPECT_TRUE(s.IsRole("bin-3ff"));
  EXPECT_FALSE(s.IsRole("bin-400"));
  EXPECT_FALSE(s.IsRole("bin-03"));
  EXPECT_FALSE(s.IsRole("other-001"));
}

}  // namespace
}  // namespace outpost::tuf
