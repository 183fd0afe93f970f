#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>

#include "core/atomic_file.h"
#include "core/error.h"
#include "secrets/secret_store.h"
#include "software_tpm.h"
#include "temp_dir.h"
#include "tpm/device_key.h"
#include "tpm/measured_launch.h"
#include "tpm/platform_security.h"
#include "tpm/tpm.h"

namespace outpost::tpm {
namespace {

// True when `signature` (DER ECDSA) over SHA-256(message) verifies with `spki` (DER).
bool Verifies(const std::string& spki, std::string_view message, const std::string& signature) {
  const auto* p = reinterpret_cast<const unsigned char*>(spki.data());
  EVP_PKEY* key = d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size()));
  if (!key) return false;
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  bool ok = EVP_DigestVerifyInit(md, nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestVerify(
                md, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(md);
  EVP_PKEY_free(key);
  return ok;
}

TEST(Tpm, ReportsTheSoftwareTpmsManufacturer) {
  TempDir dir;
  SoftwareTpm swtpm(dir.path() / "tpm");
  auto tpm = Tpm::Open(swtpm.tcti());
  EXPECT_EQ(tpm->Info().manufacturer, "IBM");
}

TEST(Tpm, NoTpmIsUnavailable) {
  TempDir dir;
  try {
    Tpm::Open("swtpm:path=" + (dir.path() / "nothing.sock").string());
    FAIL() << "opened a TPM that is not there";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable) << e.what();
    EXPECT_NE(std::string(e.what()).find("TPM"), std::string::npos) << e.what();
  }
}

TEST(DeviceKey, SignsWhatOpenSslVerifiesAndNothingElse) {
  TempDir dir;
  SoftwareTpm swtpm(dir.path() / "tpm");
  auto tpm = Tpm::Open(swtpm.tcti());
  const auto file = dir.path() / "device-key.tpm";
  auto key = DeviceKey::LoadOrCreate(*tpm, file);
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  const std::string message = "POST\n/v1/devices/d1/report\n1700000000000\nabc";
  const std::string sig = key.Sign(message);
  EXPECT_TRUE(Verifies(key.public_key_der(), message, sig));
  EXPECT_FALSE(Verifies(key.public_key_der(), message + "x", sig));
  // ECDSA signatures are randomised; each one verifies.
  const std::string again = key.Sign(message);
  EXPECT_NE(sig, again);
  EXPECT_TRUE(Verifies(key.public_key_der(), message, again));
}

TEST(DeviceKey, IsTheSameKeyAfterTheTpmRestarts) {
  TempDir dir;
  SoftwareTpm swtpm(dir.path() / "tpm");
  const auto file = dir.path() / "device-key.tpm";
  std::string before;
  {
    auto tpm = Tpm::Open(swtpm.tcti());
    before = DeviceKey::LoadOrCreate(*tpm, file).public_key_der();
  }
  const std::string stored = ReadFile(file);
  swtpm.Stop();
  swtpm.Start();
  auto tpm = Tpm::Open(swtpm.tcti());
  auto key = DeviceKey::LoadOrCreate(*tpm, file);
  EXPECT_EQ(key.public_key_der(), before);
  EXPECT_EQ(ReadFile(file), stored) << "loading must not rewrite the key file";
  EXPECT_TRUE(Verifies(before, "after a reboot", key.Sign("after a reboot")));
}

TEST(DeviceKey, ACopiedKeyFileIsUselessOnAnotherTpm) {
  TempDir dir;
  SoftwareTpm first(dir.path() / "tpm1");
  SoftwareTpm second(dir.path() / "tpm2");
  const auto file = dir.path() / "device-key.tpm";
  {
    auto tpm = Tpm::Open(first.tcti());
    DeviceKey::LoadOrCreate(*tpm, file);
  }
  const std::string stored = ReadFile(file);
  auto other = Tpm::Open(second.tcti());
  try {
    DeviceKey::LoadOrCreate(*other, file);
    FAIL() << "another TPM loaded the key";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFailedPrecondition) << e.what();
    EXPECT_NE(std::string(e.what()).find("another TPM"), std::string::npos) << e.what();
  }
  EXPECT_EQ(ReadFile(file), stored) << "the identity must not be replaced";

  // A bit flipped in the wrapped key: the TPM's integrity check refuses it.
  std::string forged = stored;
  forged[forged.size() - 5] ^= 0x01;
  WriteFileAtomically(file, forged, 0600);
  auto tpm = Tpm::Open(first.tcti());
  EXPECT_THROW(DeviceKey::LoadOrCreate(*tpm, file), Error);
}

TEST(DeviceKey, DamagedOrExposedFilesAreRefusedWithTheReason) {
  TempDir dir;
  SoftwareTpm swtpm(dir.path() / "tpm");
  auto tpm = Tpm::Open(swtpm.tcti());
  const auto file = dir.path() / "device-key.tpm";
  DeviceKey::LoadOrCreate(*tpm, file);
  const std::string stored = ReadFile(file);

  auto refused = [&](const std::string& contents, unsigned mode, const std::string& why) {
    WriteFileAtomically(file, contents, mode);
    try {
      DeviceKey::LoadOrCreate(*tpm, file);
      ADD_FAILURE() << "loaded: " << why;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kFailedPrecondition) << e.what();
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  };
  refused(stored.substr(0, stored.size() / 2), 0600, "truncated");
  refused("garbage", 0600, "not an Outpost TPM file");
  refused(stored + "x", 0600, "trailing bytes");
  refused(stored, 0644, file.string());  // readable by others
}

// Not a timing assertion: prints what a TPM signature costs, for the notes.
TEST(DeviceKey, PrintsSigningLatency) {
  TempDir dir;
  SoftwareTpm swtpm(dir.path() / "tpm");
  auto tpm = Tpm::Open(swtpm.tcti());
  const auto start = std::chrono::steady_clock::now();
  auto key = DeviceKey::LoadOrCreate(*tpm, dir.path() / "k");
  const auto made = std::chrono::steady_clock::now();
  constexpr int kSignatures = 50;
  std::string sig;
  for (int i = 0; i < kSignatures; ++i) sig = key.Sign("request " + std::to_string(i));
  const auto done = std::chrono::steady_clock::now();
  EXPECT_TRUE(Verifies(key.public_key_der(), "request 49", sig));
  std::printf("swtpm: key made and loaded in %.1f ms; %.2f ms per signature\n",
              std::chrono::duration<double, std::milli>(made - start).count(),
              std::chrono::duration<double, std::milli>(done - made).count() / kSignatures);
}

void WriteEfiFlag(const std::filesystem::path& dir, const std::string& name, char value) {
  // Attributes (non-volatile, boot and runtime access), then the value.
  WriteFileAtomically(dir / (name + "-8be4df61-93ca-11d2-aa0d-00e098032b8c"),
                      std::string("\x06\0\0\0", 4) + value);
}

TEST(PlatformSecurity, ReadsSecureBootAndLockdownFromTheirFiles) {
  TempDir dir;
  PlatformPaths paths{dir.path() / "efivars", dir.path() / "lockdown"};
  ::unsetenv("OUTPOST_TPM_TCTI");
  auto s = ReadPlatformSecurity(paths);
  EXPECT_EQ(s.secure_boot, "not UEFI");
  EXPECT_EQ(s.lockdown, "not available");

  std::filesystem::create_directories(paths.efivars);
  EXPECT_EQ(ReadPlatformSecurity(paths).secure_boot, "unknown");
  WriteEfiFlag(paths.efivars, "SecureBoot", 1);
  EXPECT_EQ(ReadPlatformSecurity(paths).secure_boot, "enabled");
  WriteEfiFlag(paths.efivars, "SetupMode", 1);
  EXPECT_EQ(ReadPlatformSecurity(paths).secure_boot, "setup mode");
  WriteEfiFlag(paths.efivars, "SetupMode", 0);
  WriteEfiFlag(paths.efivars, "SecureBoot", 0);
  EXPECT_EQ(ReadPlatformSecurity(paths).secure_boot, "disabled");

  WriteFileAtomically(paths.lockdown, "none [integrity] confidentiality\n");
  EXPECT_EQ(ReadPlatformSecurity(paths).lockdown, "integrity");
  WriteFileAtomically(paths.lockdown, "[none] integrity confidentiality\n");
  EXPECT_EQ(ReadPlatformSecurity(paths).lockdown, "none");
}

TEST(PlatformSecurity, ReportsTheTpmItReachesOrWhyNot) {
  TempDir dir;
  SoftwareTpm swtpm(dir.path() / "tpm");
  ::setenv("OUTPOST_TPM_TCTI", swtpm.tcti().c_str(), 1);
  auto s = ReadPlatformSecurity({dir.path() / "efivars", dir.path() / "lockdown"});
  EXPECT_TRUE(s.tpm_present);
  EXPECT_EQ(s.tpm_manufacturer, "IBM");
  EXPECT_EQ(ToJson(s)["tpm"]["tcti"], swtpm.tcti());

  swtpm.Stop();
  s = ReadPlatformSecurity({dir.path() / "efivars", dir.path() / "lockdown"});
  ::unsetenv("OUTPOST_TPM_TCTI");
  EXPECT_FALSE(s.tpm_present);
  EXPECT_NE(s.tpm_error.find("TPM"), std::string::npos) << s.tpm_error;
  EXPECT_TRUE(ToJson(s)["tpm"].contains("error"));
}

TEST(SealedSecretStore, TheKeyIsSealedAndSurvivesARebootOfItsTpm) {
  TempDir dir;
  SoftwareTpm swtpm(dir.path() / "tpm");
  const auto store = dir.path() / "secrets";
  SecretStore(store, /*create=*/true, swtpm.tcti()).Set("cloud_api_key", "sk-sealed-0123");
  EXPECT_TRUE(std::filesystem::exists(store / "store.key.tpm"));
  EXPECT_FALSE(std::filesystem::exists(store / "store.key"));
  swtpm.Stop();
  swtpm.Start();
  const auto start = std::chrono::steady_clock::now();
  SecretStore reopened(store, false, swtpm.tcti());
  const auto opened = std::chrono::steady_clock::now();
  EXPECT_EQ(reopened.Get("cloud_api_key").reveal(), "sk-sealed-0123");
  // Not a timing assertion: what a sealed key adds to a start, for the notes.
  std::printf("swtpm: sealed secret store opened (storage key made, key unsealed) in %.1f ms\n",
              std::chrono::duration<double, std::milli>(opened - start).count());
}

TEST(SealedSecretStore, ACopyOnAnotherTpmOrWithoutOneDecryptsNothing) {
  TempDir dir;
  SoftwareTpm device(dir.path() / "tpm1");
  SoftwareTpm other(dir.path() / "tpm2");
  const auto store = dir.path() / "secrets", copy = dir.path() / "copied";
  SecretStore(store, true, device.tcti()).Set("cloud_api_key", "sk-sealed-0123");
  std::filesystem::copy(store, copy, std::filesystem::copy_options::recursive);
  try {
    SecretStore s(copy, false, other.tcti());
    FAIL() << "another TPM opened the store";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFailedPrecondition) << e.what();
    EXPECT_NE(std::string(e.what()).find("another TPM"), std::string::npos) << e.what();
  }
  try {
    SecretStore s(copy, false, std::nullopt);
    FAIL() << "opened a sealed store without a TPM";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFailedPrecondition) << e.what();
    EXPECT_NE(std::string(e.what()).find("no TPM here"), std::string::npos) << e.what();
  }
  // The device itself still opens its own.
  EXPECT_EQ(SecretStore(store, false, device.tcti()).Get("cloud_api_key").reveal(),
            "sk-sealed-0123");
}

TEST(SealedSecretStore, AFileKeyIsSealedTheFirstTimeATpmIsThere) {
  TempDir dir;
  SoftwareTpm swtpm(dir.path() / "tpm");
  const auto store = dir.path() / "secrets";
  SecretStore(store, true, std::nullopt).Set("token", "t-1");
  const std::string plain_key = ReadFile(store / "store.key");
  SecretStore migrated(store, false, swtpm.tcti());
  EXPECT_EQ(migrated.Get("token").reveal(), "t-1");
  EXPECT_FALSE(std::filesystem::exists(store / "store.key"));
  EXPECT_TRUE(std::filesystem::exists(store / "store.key.tpm"));
  const std::string sealed = ReadFile(store / "store.key.tpm");
  EXPECT_EQ(sealed.find(plain_key), std::string::npos) << "the key is in the sealed file in clear";

  // A migration stopped after sealing, before the plain key was removed: the next open ends it.
  WriteFileAtomically(store / "store.key", plain_key, 0600);
  EXPECT_EQ(SecretStore(store, false, swtpm.tcti()).Get("token").reveal(), "t-1");
  EXPECT_FALSE(std::filesystem::exists(store / "store.key"));
}

TEST(MeasuredLaunch, TheLogReplaysToThePcrAndAnEditedLogDoesNot) {
  TempDir dir;
  SoftwareTpm swtpm(dir.path() / "tpm");
  auto tpm = Tpm::Open(swtpm.tcti());
  MeasurementLog log(dir.path() / "measurements.json");
  log.StartIfReset(*tpm);
  log.Measure(*tpm, {kApplicationPcr, Sha256Of("/proc/self/exe"), "agent"});
  WriteFileAtomically(dir.path() / "a.onnx", "the bytes of package a");
  log.Measure(*tpm, {kApplicationPcr, Sha256Of(dir.path() / "a.onnx"), "package a 1"});
  Sha256 b{};
  b.fill(0xbb);
  log.Measure(*tpm, {kApplicationPcr, b, "package b 2"});
  const auto events = log.Events();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].description, "agent");
  EXPECT_EQ(Replay(events), ReadPcr(*tpm));
  EXPECT_NE(ReadPcr(*tpm), Sha256{});

  auto edited = events;
  edited[1].digest[0] ^= 1;
  EXPECT_NE(Replay(edited), ReadPcr(*tpm)) << "an edited digest";
  edited = events;
  edited.erase(edited.begin() + 2);
  EXPECT_NE(Replay(edited), ReadPcr(*tpm)) << "a measurement left out";
  edited = events;
  std::swap(edited[0], edited[1]);
  EXPECT_NE(Replay(edited), ReadPcr(*tpm)) << "the order changed";

  // Something extended the PCR that the log does not hold: the log no longer replays.
  MeasurementLog(dir.path() / "elsewhere.json").Measure(*tpm, {kApplicationPcr, b, "unlogged"});
  EXPECT_NE(Replay(log.Events()), ReadPcr(*tpm));
}

TEST(MeasuredLaunch, ARebootStartsTheLogOver) {
  TempDir dir;
  SoftwareTpm swtpm(dir.path() / "tpm");
  MeasurementLog log(dir.path() / "measurements.json");
  Sha256 agent{};
  agent.fill(0x11);
  {
    auto tpm = Tpm::Open(swtpm.tcti());
    log.StartIfReset(*tpm);
    log.Measure(*tpm, {kApplicationPcr, agent, "agent"});
    log.StartIfReset(*tpm);  // not reset: the log is kept
    EXPECT_EQ(log.Events().size(), 1u);
  }
  swtpm.Stop();
  swtpm.Start();
  auto tpm = Tpm::Open(swtpm.tcti());
  EXPECT_EQ(ReadPcr(*tpm), Sha256{});
  log.StartIfReset(*tpm);
  EXPECT_TRUE(log.Events().empty());
  log.Measure(*tpm, {kApplicationPcr, agent, "agent"});
  EXPECT_EQ(Replay(log.Events()), ReadPcr(*tpm));
}

TEST(MeasuredLaunch, AMalformedLogIsRefused) {
  TempDir dir;
  const auto file = dir.path() / "measurements.json";
  for (const std::string& bad : std::vector<std::string>{
           "[]", "{\"events\": 3}", "{\"events\": [{\"pcr\": 23}]}",
           "{\"events\": [{\"pcr\": 24, \"sha256\": \"" + std::string(64, 'a') +
               "\", \"description\": \"x\"}]}",
           "{\"events\": [{\"pcr\": 23, \"sha256\": \"zz\", \"description\": \"x\"}]}",
           std::string(100000, '[') + std::string(100000, ']')}) {
    WriteFileAtomically(file, bad);
    EXPECT_THROW(MeasurementLog(file).Events(), Error) << bad.substr(0, 80);
  }
}

}  // namespace
}  // namespace outpost::tpm
