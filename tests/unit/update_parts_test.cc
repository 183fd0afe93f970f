// The pieces of the update client that need no network: deltas, policies, slot records, and
// rebuilding an installed version's package byte for byte (what a delta is applied to).
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <random>

#include "core/atomic_file.h"
#include "core/error.h"
#include "package/package.h"
#include "package/sha256.h"
#include "temp_dir.h"
#include "update/delta.h"
#include "update/policy.h"
#include "update/slots.h"

namespace outpost {
namespace {

namespace fs = std::filesystem;

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

TEST(Delta, RoundTripIsSmallWhenLittleChanged) {
  TempDir d;
  std::string old_bytes = RandomBytes(2 << 20, 1), new_bytes = old_bytes;
  for (size_t i = 0; i < 4096; ++i) new_bytes[1 << 20 | i] ^= 0x5a;  // 4 KiB changed
  new_bytes += RandomBytes(1000, 2);
  WriteFileAtomically(d.path() / "old", old_bytes);
  WriteFileAtomically(d.path() / "new", new_bytes);
  tuf::MakeDelta(d.path() / "old", d.path() / "new", d.path() / "delta");
  EXPECT_LT(fs::file_size(d.path() / "delta"), 16u << 10);
  tuf::ApplyDelta(d.path() / "old", d.path() / "delta", d.path() / "out", new_bytes.size());
  EXPECT_EQ(ReadFile(d.path() / "out"), new_bytes);
}

TEST(Delta, WrongBaseCorruptDeltaAndOverlongOutputAreRefused) {
  TempDir d;
  std::string old_bytes = RandomBytes(256 << 10, 3), new_bytes = old_bytes + "tail";
  WriteFileAtomically(d.path() / "old", old_bytes);
  WriteFileAtomically(d.path() / "new", new_bytes);
  WriteFileAtomically(d.path() / "other", RandomBytes(256 << 10, 4));
  tuf::MakeDelta(d.path() / "old", d.path() / "new", d.path() / "delta");
  try {
    tuf::ApplyDelta(d.path() / "other", d.path() / "delta", d.path() / "out", new_bytes.size());
    FAIL() << "a delta applied to another base must fail its checksum";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
  }
  EXPECT_FALSE(fs::exists(d.path() / "out"));
  EXPECT_FALSE(fs::exists(d.path() / "out.tmp"));
  std::string delta = ReadFile(d.path() / "delta");
  WriteFileAtomically(d.path() / "truncated", delta.substr(0, delta.size() / 2));
  EXPECT_THROW(
      tuf::ApplyDelta(d.path() / "old", d.path() / "truncated", d.path() / "out", new_bytes.size()),
      Error);
  try {
    tuf::ApplyDelta(d.path() / "old", d.path() / "delta", d.path() / "out", new_bytes.size() - 1);
    FAIL() << "more bytes than were signed for";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kPermissionDenied) << e.what();
  }
  EXPECT_FALSE(fs::exists(d.path() / "out"));
}

TEST(Policy, WindowsIncludingOnesOverMidnight) {
  EXPECT_THROW(tuf::ParseWindow("2-4"), Error);
  EXPECT_THROW(tuf::ParseWindow("25:00-01:00"), Error);
  EXPECT_THROW(tuf::ParseWindow("02:00-04:00x"), Error);
  auto at = [](int hour, int minute) {
    std::tm t{};
    t.tm_year = 126;
    t.tm_mon = 10;
    t.tm_mday = 24;
    t.tm_hour = hour;
    t.tm_min = minute;
    t.tm_isdst = -1;
    return std::chrono::system_clock::from_time_t(std::mktime(&t));
  };
  tuf::UpdatePolicy night;
  night.windows = {tuf::ParseWindow("23:30-02:00")};
  EXPECT_FALSE(tuf::PolicyBlocks(night, at(23, 45), "127.0.0.1"));
  EXPECT_FALSE(tuf::PolicyBlocks(night, at(1, 59), "127.0.0.1"));
  EXPECT_TRUE(tuf::PolicyBlocks(night, at(2, 0), "127.0.0.1"));
  EXPECT_TRUE(tuf::PolicyBlocks(night, at(12, 0), "127.0.0.1"));
  tuf::UpdatePolicy metered;
  metered.metered_interfaces = {"wwan*", "lo"};
  auto why = tuf::PolicyBlocks(metered, at(12, 0), "127.0.0.1");
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("metered interface lo"), std::string::npos) << *why;
  metered.metered_interfaces = {"wwan*"};
  EXPECT_FALSE(tuf::PolicyBlocks(metered, at(12, 0), "127.0.0.1"));
  EXPECT_EQ(tuf::RouteInterface("127.0.0.2"), "lo");
}

TEST(Slots, RoundTripAndCorruptRecord) {
  TempDir d;
  EXPECT_FALSE(ReadSlots(d.path()));
  SlotState s;
  s.committed = "2.0.0";
  s.previous = "1.0.0";
  s.trial = "3.0.0";
  s.trial_attempts = 1;
  s.failed = {"2.5.0"};
  WriteSlots(d.path(), s);
  auto back = ReadSlots(d.path());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->committed, "2.0.0");
  EXPECT_EQ(back->trial, "3.0.0");
  EXPECT_TRUE(back->HasFailed("2.5.0"));
  EXPECT_FALSE(back->HasFailed("3.0.0"));
  WriteFileAtomically(d.path() / kSlotsFile, "{\"committed\": 7}");
  EXPECT_THROW(ReadSlots(d.path()), Error);
  WriteFileAtomically(d.path() / kSlotsFile, "[");
  EXPECT_THROW(ReadSlots(d.path()), Error);
}

TEST(Package, RebuildGivesTheInstalledPackageByteForByte) {
  TempDir d;
  fs::create_directories(d.path() / "src");
  WriteFileAtomically(d.path() / "src" / "model.onnx", RandomBytes(10000, 5));
  WriteFileAtomically(d.path() / "src" / "vocab.txt", "a\nb\n");
  auto manifest = ManifestForDirectory(
      {{"name", "m"}, {"version", "1.0.0"}, {"inputs", nlohmann::json::array()}}, d.path() / "src");
  WritePackage(d.path() / "m.opkg", manifest, d.path() / "src");
  SignPackage(d.path() / "m.opkg", GenerateSigningKey("k"));
  InstallPackage(d.path() / "m.opkg", d.path() / "repo", nullptr);
  RebuildPackage(d.path() / "repo" / "m" / "1.0.0", d.path() / "rebuilt.opkg");
  EXPECT_EQ(Sha256File(d.path() / "rebuilt.opkg", nullptr),
            Sha256File(d.path() / "m.opkg", nullptr));
}

}  // namespace
}  // namespace outpost
