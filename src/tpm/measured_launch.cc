#include "tpm/measured_launch.h"

#include <openssl/evp.h>
#include <tss2/tss2_esys.h>

#include <cstring>
#include <fstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_input.h"

namespace outpost::tpm {
namespace {

std::string Hex(const Sha256& d) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (uint8_t b : d) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

bool FromHex(const std::string& hex, Sha256& out) {
  if (hex.size() != 64) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < 32; ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

Sha256 Digest(const void* data, size_t size, const void* more = nullptr, size_t more_size = 0) {
  Sha256 out{};
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  unsigned len = 0;
  EVP_DigestInit_ex(md, EVP_sha256(), nullptr);
  EVP_DigestUpdate(md, data, size);
  if (more) EVP_DigestUpdate(md, more, more_size);
  EVP_DigestFinal_ex(md, out.data(), &len);
  EVP_MD_CTX_free(md);
  return out;
}

void CheckPcr(unsigned pcr) {
  if (pcr > 23)
    Fail(ErrorCode::kInvalidArgument, "TPM: PCR " + std::to_string(pcr) + " does not exist");
}

}  // namespace

Sha256 Sha256Of(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) Fail(ErrorCode::kNotFound, "cannot read " + file.string() + " to measure it");
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(md, EVP_sha256(), nullptr);
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0)
    EVP_DigestUpdate(md, buf, static_cast<size_t>(in.gcount()));
  Sha256 out{};
  unsigned len = 0;
  EVP_DigestFinal_ex(md, out.data(), &len);
  EVP_MD_CTX_free(md);
  return out;
}

Sha256 Replay(const std::vector<MeasurementEvent>& events, unsigned pcr) {
  Sha256 value{};
  for (const auto& e : events)
    if (e.pcr == pcr) value = Digest(value.data(), value.size(), e.digest.data(), e.digest.size());
  return value;
}

Sha256 ReadPcr(Tpm& tpm, unsigned pcr) {
  CheckPcr(pcr);
  TPML_PCR_SELECTION selection{};
  selection.count = 1;
  selection.pcrSelections[0].hash = TPM2_ALG_SHA256;
  selection.pcrSelections[0].sizeofSelect = 3;
  selection.pcrSelections[0].pcrSelect[pcr / 8] = static_cast<BYTE>(1u << (pcr % 8));
  UINT32 counter = 0;
  TPML_PCR_SELECTION* read = nullptr;
  TPML_DIGEST* values = nullptr;
  Check(Esys_PCR_Read(tpm.esys(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &selection, &counter,
                      &read, &values),
        "reading a PCR");
  Sha256 out{};
  const bool ok = values->count == 1 && values->digests[0].size == out.size();
  if (ok) std::memcpy(out.data(), values->digests[0].buffer, out.size());
  Esys_Free(read);
  Esys_Free(values);
  if (!ok)
    Fail(ErrorCode::kFailedPrecondition,
         "TPM: PCR " + std::to_string(pcr) + " has no SHA-256 bank");
  return out;
}

std::vector<MeasurementEvent> MeasurementLog::Events() const {
  std::error_code ec;
  if (!std::filesystem::exists(file_, ec)) return {};
  const auto doc = ParseJson(ReadFile(file_), JsonLimits::Document(4u << 20), "measurement log");
  std::vector<MeasurementEvent> events;
  auto bad = [&](const std::string& why) {
    Fail(ErrorCode::kFailedPrecondition, "measurement log " + file_.string() + ": " + why);
  };
  if (!doc.is_object() || !doc.contains("events") || !doc["events"].is_array())
    bad("no events array");
  for (const auto& e : doc["events"]) {
    MeasurementEvent ev;
    if (!e.is_object() || !e.value("pcr", nlohmann::json()).is_number_unsigned() ||
        !e.value("sha256", nlohmann::json()).is_string() ||
        !e.value("description", nlohmann::json()).is_string())
      bad("an event needs pcr, sha256 and description");
    ev.pcr = e["pcr"].get<unsigned>();
    if (ev.pcr > 23 || !FromHex(e["sha256"].get<std::string>(), ev.digest))
      bad("an event has a bad pcr or sha256");
    ev.description = e["description"].get<std::string>();
    events.push_back(std::move(ev));
  }
  return events;
}

void MeasurementLog::Measure(Tpm& tpm, const MeasurementEvent& event) {
  CheckPcr(event.pcr);
  nlohmann::json doc = {{"events", nlohmann::json::array()}};
  for (const auto& e : Events())
    doc["events"].push_back(
        {{"pcr", e.pcr}, {"sha256", Hex(e.digest)}, {"description", e.description}});
  doc["events"].push_back(
      {{"pcr", event.pcr}, {"sha256", Hex(event.digest)}, {"description", event.description}});
  WriteFileAtomically(file_, doc.dump(1) + "\n", 0644);

  TPML_DIGEST_VALUES digests{};
  digests.count = 1;
  digests.digests[0].hashAlg = TPM2_ALG_SHA256;
  std::memcpy(digests.digests[0].digest.sha256, event.digest.data(), event.digest.size());
  ESYS_TR handle = ESYS_TR_PCR0 + event.pcr;
  Check(Esys_PCR_Extend(tpm.esys(), handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &digests),
        ("extending PCR " + std::to_string(event.pcr)).c_str());
}

void MeasurementLog::StartIfReset(Tpm& tpm, unsigned pcr) {
  if (ReadPcr(tpm, pcr) == Sha256{}) WriteFileAtomically(file_, "{\"events\": []}\n", 0644);
}

}  // namespace outpost::tpm
