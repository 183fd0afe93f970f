// Objects the TPM makes under the storage primary key and that are kept on disk in the TPM's
// own wrapping (a sealed secret, the device key): only the TPM that made one can load it.
// Internal to src/tpm.
#pragma once

#include <tss2/tss2_esys.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

namespace outpost::tpm {

// Flushes a transient object (or forgets a persistent one's ESAPI handle) unless released.
class ObjectHandle {
 public:
  ObjectHandle(ESYS_CONTEXT* ctx, ESYS_TR tr, bool transient)
      : ctx_(ctx), tr_(tr), transient_(transient) {}
  ~ObjectHandle();
  ObjectHandle(ObjectHandle&& o) noexcept
      : ctx_(o.ctx_), tr_(std::exchange(o.tr_, ESYS_TR_NONE)), transient_(o.transient_) {}
  ObjectHandle(const ObjectHandle&) = delete;
  ESYS_TR get() const { return tr_; }
  bool transient() const { return transient_; }
  ESYS_TR release() { return std::exchange(tr_, ESYS_TR_NONE); }

 private:
  ESYS_CONTEXT* ctx_;
  ESYS_TR tr_;
  bool transient_;
};

// A template's common part: SHA-256 names; an object bound to this TPM and to its parent, used
// with its (empty) authorisation and out of reach of the dictionary-attack lockout; `extra`
// attributes on top.
TPM2B_PUBLIC Template(TPMI_ALG_PUBLIC type, TPMA_OBJECT extra);

// The storage primary key: made from the TCG's ECC P-256 template under the owner hierarchy
// (the same template under the same seed gives the same key), or, where the owner has set a
// password we do not have, the one provisioned at 0x81000001.
ObjectHandle StorageKey(ESYS_CONTEXT* ctx);

struct WrappedObject {
  TPM2B_NAME parent{};  // the storage key's name when it was made
  TPM2B_PUBLIC pub{};
  TPM2B_PRIVATE priv{};
};

// Has the TPM make an object from `tmpl` (with `sensitive` data, for a sealed secret) under
// `srk`.
WrappedObject CreateUnder(ESYS_CONTEXT* ctx, const ObjectHandle& srk, const TPM2B_PUBLIC& tmpl,
                          const TPM2B_SENSITIVE_CREATE& sensitive, const char* what);
// Loads it, after checking it was made under this storage key; `file` names it in errors.
ObjectHandle LoadUnder(ESYS_CONTEXT* ctx, const ObjectHandle& srk, const WrappedObject& object,
                       const std::filesystem::path& file);

// On disk: `magic`, then the three parts as the TPM marshals them.
std::string Serialize(const WrappedObject& object, std::string_view magic);
// Throws Error(kFailedPrecondition) naming `file` and what is wrong with it.
WrappedObject Parse(const std::string& bytes, std::string_view magic,
                    const std::filesystem::path& file);

}  // namespace outpost::tpm
