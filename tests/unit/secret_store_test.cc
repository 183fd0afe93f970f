// The encrypted credential store: round trip, and every way a stored secret can be wrong.
#include "secrets/secret_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"

namespace outpost {
namespace {

namespace fs = std::filesystem;

struct StoreDir {
  fs::path path =
      fs::temp_directory_path() / ("outpost-secrets-" + std::to_string(::getpid()) + "-" +
                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  explicit StoreDir(const std::string& tag = "") {
    path += tag;
    fs::remove_all(path);
  }
  ~StoreDir() { fs::remove_all(path); }
};

ErrorCode CodeOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  ADD_FAILURE() << "no error";
  return ErrorCode::kInternal;
}

TEST(SecretStore, RoundTripPrivateFilesNoPlaintext) {
  StoreDir d;
  const std::string value = "sk-test-0123456789abcdef";
  {
    SecretStore store(d.path, /*create=*/true);
    store.Set("openai", value);
    store.Set("other", "x");
    EXPECT_EQ(store.Get("openai").reveal(), value);
    EXPECT_EQ(store.List(), (std::vector<std::string>{"openai", "other"}));
  }
  struct stat st {};
  ASSERT_EQ(::stat(d.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  for (const char* f : {"store.key", "openai.secret"}) {
    ASSERT_EQ(::stat((d.path / f).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
  EXPECT_EQ(ReadFile(d.path / "openai.secret").find(value), std::string::npos);
  SecretStore reopened(d.path);
  EXPECT_EQ(reopened.Get("openai").reveal(), value);
  EXPECT_TRUE(reopened.Remove("other"));
  EXPECT_EQ(CodeOf([&] { reopened.Get("other"); }), ErrorCode::kNotFound);
}

TEST(SecretStore, TamperedRenamedForeignAndLooseFilesAreRefused) {
  StoreDir d;
  SecretStore store(d.path, true);
  store.Set("a", "alpha");
  store.Set("b", "bravo");
  std::string data = ReadFile(d.path / "a.secret");
  data[data.size() - 1] ^= 1;
  WriteFileAtomically(d.path / "a.secret", data, 0600);
  EXPECT_EQ(CodeOf([&] { store.Get("a"); }), ErrorCode::kPermissionDenied);
  // b's ciphertext under a's name: the name is bound in as associated data.
  WriteFileAtomically(d.path / "a.secret", ReadFile(d.path / "b.secret"), 0600);
  EXPECT_EQ(CodeOf([&] { store.Get("a"); }), ErrorCode::kPermissionDenied);
  WriteFileAtomically(d.path / "a.secret", "short", 0600);
  EXPECT_EQ(CodeOf([&] { store.Get("a"); }), ErrorCode::kPermissionDenied);
  // Another store's key cannot read this store's files.
  StoreDir other("-other");
  SecretStore foreign(other.path, true);
  fs::copy_file(d.path / "b.secret", other.path / "b.secret");
  EXPECT_EQ(CodeOf([&] { foreign.Get("b"); }), ErrorCode::kPermissionDenied);
  fs::permissions(d.path / "b.secret", fs::perms::group_read, fs::perm_options::add);
  EXPECT_EQ(CodeOf([&] { store.Get("b"); }), ErrorCode::kFailedPrecondition);
  fs::permissions(d.path / "store.key", fs::perms::others_read, fs::perm_options::add);
  EXPECT_EQ(CodeOf([&] { SecretStore again(d.path); }), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(CodeOf([&] { store.Set("../escape", "x"); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf([&] { SecretStore none(d.path / "missing"); }), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace outpost
