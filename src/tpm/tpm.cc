#include "tpm/tpm.h"

#include <tss2/tss2_esys.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include <cstdlib>
#include <filesystem>

namespace outpost::tpm {

void Check(unsigned rc, const char* what) {
  if (rc == TSS2_RC_SUCCESS) return;
  const unsigned layer = rc & TSS2_RC_LAYER_MASK;
  const ErrorCode code = layer == TSS2_TCTI_RC_LAYER  ? ErrorCode::kUnavailable
                         : layer == TSS2_TPM_RC_LAYER ? ErrorCode::kFailedPrecondition
                                                      : ErrorCode::kInternal;
  Fail(code, std::string("TPM: ") + what + ": " + Tss2_RC_Decode(rc));
}

std::optional<std::string> Tpm::DefaultTcti() {
  if (const char* env = std::getenv("OUTPOST_TPM_TCTI"); env && *env) return std::string(env);
  std::error_code ec;
  if (std::filesystem::exists("/dev/tpmrm0", ec)) return std::string("device:/dev/tpmrm0");
  return std::nullopt;
}

std::unique_ptr<Tpm> Tpm::Open(const std::string& tcti) {
  // The TSS logs its failures to stderr; ours say the same with context, once. TSS2_LOG set by
  // the user still wins.
  ::setenv("TSS2_LOG", "all+NONE", /*overwrite=*/0);
  TSS2_TCTI_CONTEXT* t = nullptr;
  Check(Tss2_TctiLdr_Initialize(tcti.c_str(), &t), ("connecting to " + tcti).c_str());
  ESYS_CONTEXT* e = nullptr;
  if (TSS2_RC rc = Esys_Initialize(&e, t, nullptr); rc != TSS2_RC_SUCCESS) {
    Tss2_TctiLdr_Finalize(&t);
    Check(rc, "initialising ESAPI");
  }
  std::unique_ptr<Tpm> tpm(new Tpm(tcti, t, e));
  // A TPM the firmware or the kernel already started answers TPM2_RC_INITIALIZE: that is fine.
  TSS2_RC rc = Esys_Startup(e, TPM2_SU_CLEAR);
  if ((rc & ~TSS2_RC_LAYER_MASK) != TPM2_RC_INITIALIZE) Check(rc, "startup");
  return tpm;
}

Tpm::~Tpm() {
  Esys_Finalize(&esys_);
  Tss2_TctiLdr_Finalize(&tcti_ctx_);
}

namespace {
std::string FourChars(uint32_t v) {
  std::string s;
  for (int shift = 24; shift >= 0; shift -= 8) {
    char c = static_cast<char>((v >> shift) & 0xff);
    if (c >= 0x20 && c < 0x7f) s += c;
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}
}  // namespace

TpmInfo Tpm::Info() {
  TPMI_YES_NO more = TPM2_NO;
  TPMS_CAPABILITY_DATA* data = nullptr;
  Check(Esys_GetCapability(esys_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES,
                           TPM2_PT_MANUFACTURER, 8, &more, &data),
        "reading the TPM's properties");
  TpmInfo info;
  const auto& props = data->data.tpmProperties;
  for (UINT32 i = 0; i < props.count; ++i) {
    const auto& p = props.tpmProperty[i];
    switch (p.property) {
      case TPM2_PT_MANUFACTURER:
        info.manufacturer = FourChars(p.value);
        break;
      case TPM2_PT_VENDOR_STRING_1:
      case TPM2_PT_VENDOR_STRING_2:
      case TPM2_PT_VENDOR_STRING_3:
      case TPM2_PT_VENDOR_STRING_4:
        info.vendor += FourChars(p.value);
        break;
      case TPM2_PT_FIRMWARE_VERSION_1:
        info.firmware_version |= static_cast<uint64_t>(p.value) << 32;
        break;
      case TPM2_PT_FIRMWARE_VERSION_2:
        info.firmware_version |= p.value;
        break;
      default:
        break;
    }
  }
  Esys_Free(data);
  return info;
}

}  // namespace outpost::tpm
