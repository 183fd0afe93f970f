#include "secrets/secret_store.h"

#include <cstring>

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/names.h"
#include "tpm/sealed_data.h"
#include "tpm/tpm.h"

namespace outpost {
namespace fs = std::filesystem;

namespace {

constexpr size_t kNonce = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kTag = crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr const char* kSuffix = ".secret";

// Overwrites a file with zeros before removing it. Best effort: a journaling or copy-on-write
// file system, or flash, may keep the old blocks; the key was sealed before this runs.
void Shred(const fs::path& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC); fd >= 0) {
    const std::string zeros(ec ? 0 : size, '\0');
    (void)!::write(fd, zeros.data(), zeros.size());
    ::fsync(fd);
    ::close(fd);
  }
  fs::remove(path, ec);
}

void Wipe(std::string& s) {
  if (!s.empty()) sodium_memzero(s.data(), s.size());
}

}  // namespace

SecretValue::~SecretValue() { Wipe(value_); }
SecretValue::SecretValue(SecretValue&& other) noexcept : value_(std::move(other.value_)) {
  Wipe(other.value_);
}

SecretStore::SecretStore(fs::path dir, bool create)
    : SecretStore(std::move(dir), create, tpm::Tpm::DefaultTcti()) {}

SecretStore::SecretStore(fs::path dir, bool create, const std::optional<std::string>& tcti)
    : dir_(std::move(dir)) {
  if (sodium_init() < 0) Fail(ErrorCode::kInternal, "libsodium failed to initialise");
  const fs::path key_path = dir_ / "store.key", sealed_path = dir_ / "store.key.tpm";
  std::unique_ptr<tpm::Tpm> chip = tcti ? tpm::Tpm::Open(*tcti) : nullptr;
  std::string key;
  struct WipeOnExit {
    std::string& s;
    ~WipeOnExit() { Wipe(s); }
  } wipe_key{key};  // on every path out, errors included
  if (!fs::exists(key_path) && !fs::exists(sealed_path)) {
    if (!create) Fail(ErrorCode::kNotFound, "no secret store in " + dir_.string());
    fs::create_directories(dir_);
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::replace);
    key.assign(crypto_aead_xchacha20poly1305_ietf_KEYBYTES, '\0');
    crypto_aead_xchacha20poly1305_ietf_keygen(reinterpret_cast<unsigned char*>(key.data()));
    if (chip)
      WriteFileAtomically(sealed_path, tpm::Seal(*chip, key), 0600);
    else
      WriteFileAtomically(key_path, key, 0600);
  }
  struct stat st {};
  if (::stat(dir_.c_str(), &st) == 0 && (st.st_mode & 077))
    Fail(ErrorCode::kFailedPrecondition,
         dir_.string() + " is open to group or others; chmod 700 it");
  if (key.empty() && fs::exists(sealed_path)) {
    if (!chip)
      Fail(ErrorCode::kFailedPrecondition,
           sealed_path.string() + " is sealed by a TPM, and there is no TPM here to unseal it");
    RequirePrivateFile(sealed_path);
    key = tpm::Unseal(*chip, ReadFile(sealed_path), sealed_path);
  } else if (key.empty()) {
    RequirePrivateFile(key_path);
    key = ReadFile(key_path);
    if (chip && key.size() == crypto_aead_xchacha20poly1305_ietf_KEYBYTES)
      WriteFileAtomically(sealed_path, tpm::Seal(*chip, key), 0600);
  }
  // A plain key beside a sealed one: a migration that stopped before it was removed.
  if (fs::exists(sealed_path) && fs::exists(key_path)) Shred(key_path);
  if (key.size() != crypto_aead_xchacha20poly1305_ietf_KEYBYTES)
    Fail(ErrorCode::kInvalidArgument, dir_.string() + " holds no valid secret store key");
  key_ = static_cast<unsigned char*>(sodium_malloc(key.size()));
  if (!key_) Fail(ErrorCode::kInternal, "no locked memory for the secret store key");
  std::memcpy(key_, key.data(), key.size());
  sodium_mprotect_readonly(key_);
}

SecretStore::~SecretStore() {
  if (key_) sodium_free(key_);  // zeroes it first
}

fs::path SecretStore::PathOf(const std::string& name) const {
  if (!IsValidModelName(name))
    Fail(ErrorCode::kInvalidArgument,
         "secret name '" + name + "' must match [A-Za-z0-9][A-Za-z0-9_.-]*");
  return dir_ / (name + kSuffix);
}

void SecretStore::Set(const std::string& name, const std::string& value) {
  fs::path path = PathOf(name);
  std::string out(kNonce + value.size() + kTag, '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(out.data());
  randombytes_buf(nonce, kNonce);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      nonce + kNonce, &written, reinterpret_cast<const unsigned char*>(value.data()), value.size(),
      reinterpret_cast<const unsigned char*>(name.data()), name.size(), nullptr, nonce, key_);
  out.resize(kNonce + written);
  WriteFileAtomically(path, out, 0600);
}

SecretValue SecretStore::Get(const std::string& name) const {
  fs::path path = PathOf(name);
  if (!fs::exists(path)) Fail(ErrorCode::kNotFound, "no secret named '" + name + "'");
  RequirePrivateFile(path);
  std::string data = ReadFile(path);
  if (data.size() < kNonce + kTag)
    Fail(ErrorCode::kPermissionDenied, "secret '" + name + "' is truncated");
  std::string value(data.size() - kNonce - kTag, '\0');
  unsigned long long n = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(data.data());
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(value.data()), &n, nullptr, in + kNonce,
          data.size() - kNonce, reinterpret_cast<const unsigned char*>(name.data()), name.size(),
          in, key_) != 0) {
    Fail(ErrorCode::kPermissionDenied,
         "secret '" + name + "' does not decrypt (altered, renamed, or from another store)");
  }
  value.resize(n);
  return SecretValue(std::move(value));
}

bool SecretStore::Remove(const std::string& name) {
  std::error_code ec;
  return fs::remove(PathOf(name), ec);
}

std::vector<std::string> SecretStore::List() const {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_)) {
    std::string n = e.path().filename().string();
    if (n.size() > 7 && n.compare(n.size() - 7, 7, kSuffix) == 0)
      names.push_back(n.substr(0, n.size() - 7));
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace outpost
