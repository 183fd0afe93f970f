// A connection to a TPM 2.0 through tpm2-tss's ESAPI: the kernel's resource manager
// (/dev/tpmrm0) on a device, a software TPM (swtpm) in tests. One connection is used by one
// thread at a time; the TPM itself serialises commands.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "core/error.h"

typedef struct ESYS_CONTEXT ESYS_CONTEXT;
typedef struct TSS2_TCTI_OPAQUE_CONTEXT_BLOB TSS2_TCTI_CONTEXT;

namespace outpost::tpm {

// Throws Error with the TSS's own decoding of `rc` when it is not success. A TPM that is
// missing or does not answer is kUnavailable; a command the TPM refused is kFailedPrecondition.
void Check(unsigned rc, const char* what);

// What identifies the chip: "IBM" / "STM" / "INTC"…, and its firmware version.
struct TpmInfo {
  std::string manufacturer;
  std::string vendor;  // the vendor strings, joined
  uint64_t firmware_version = 0;
};

class Tpm {
 public:
  // `tcti` as tpm2-tss names it: "device:/dev/tpmrm0", "swtpm:path=/run/swtpm.sock", ….
  static std::unique_ptr<Tpm> Open(const std::string& tcti);
  // The TCTI to use on this machine: $OUTPOST_TPM_TCTI when set, else the kernel's resource
  // manager when /dev/tpmrm0 exists, else nothing (no TPM).
  static std::optional<std::string> DefaultTcti();

  ~Tpm();
  Tpm(const Tpm&) = delete;
  Tpm& operator=(const Tpm&) = delete;

  ESYS_CONTEXT* esys() const { return esys_; }
  const std::string& tcti() const { return tcti_; }
  TpmInfo Info();

 private:
  Tpm(std::string tcti, TSS2_TCTI_CONTEXT* t, ESYS_CONTEXT* e)
      : tcti_(std::move(tcti)), tcti_ctx_(t), esys_(e) {}
  std::string tcti_;
  TSS2_TCTI_CONTEXT* tcti_ctx_;
  ESYS_CONTEXT* esys_;
};

}  // namespace outpost::tpm
