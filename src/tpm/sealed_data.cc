#include "tpm/sealed_data.h"

#include <tss2/tss2_esys.h>

#include <cstring>

#include "core/error.h"
#include "tpm/wrapped_object.h"

namespace outpost::tpm {
namespace {

constexpr std::string_view kMagic = "outpost-tpm-sealed-1\n";

// A keyed-hash object holding the data, unsealed with its (empty) authorisation by whoever can
// load it: only this TPM, under its storage key.
TPM2B_PUBLIC SealedTemplate() {
  TPM2B_PUBLIC t = Template(TPM2_ALG_KEYEDHASH, 0);
  t.publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
  return t;
}

}  // namespace

std::string Seal(Tpm& tpm, std::string_view secret) {
  if (secret.empty() || secret.size() > kMaxSealedBytes)
    Fail(ErrorCode::kInvalidArgument, "TPM: a sealed secret holds 1 to 128 bytes");
  ESYS_CONTEXT* ctx = tpm.esys();
  ObjectHandle srk = StorageKey(ctx);
  TPM2B_SENSITIVE_CREATE sensitive{};
  sensitive.sensitive.data.size = static_cast<UINT16>(secret.size());
  std::memcpy(sensitive.sensitive.data.buffer, secret.data(), secret.size());
  WrappedObject sealed = CreateUnder(ctx, srk, SealedTemplate(), sensitive, "sealing a secret");
  explicit_bzero(&sensitive, sizeof sensitive);
  return Serialize(sealed, kMagic);
}

std::string Unseal(Tpm& tpm, const std::string& bytes, const std::filesystem::path& file) {
  ESYS_CONTEXT* ctx = tpm.esys();
  WrappedObject sealed = Parse(bytes, kMagic, file);
  if (sealed.pub.publicArea.type != TPM2_ALG_KEYEDHASH)
    Fail(ErrorCode::kFailedPrecondition, file.string() + " is damaged (not a sealed secret)");
  ObjectHandle srk = StorageKey(ctx);
  ObjectHandle object = LoadUnder(ctx, srk, sealed, file);
  TPM2B_SENSITIVE_DATA* data = nullptr;
  Check(Esys_Unseal(ctx, object.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &data),
        ("unsealing " + file.string()).c_str());
  std::string out(reinterpret_cast<const char*>(data->buffer), data->size);
  explicit_bzero(data, sizeof *data);
  Esys_Free(data);
  return out;
}

}  // namespace outpost::tpm
