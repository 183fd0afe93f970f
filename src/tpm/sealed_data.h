// Small secrets (at most 128 bytes: a key, not a file) sealed by the TPM: what is kept on disk
// is the TPM's wrapping, which only this TPM can unseal. Copied to another machine, or kept
// after this TPM's owner hierarchy is cleared, it opens nothing.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "tpm/tpm.h"

namespace outpost::tpm {

constexpr size_t kMaxSealedBytes = 128;

// The wrapped form of `secret`, to keep on disk.
std::string Seal(Tpm& tpm, std::string_view secret);
// The secret back. Throws Error(kFailedPrecondition) naming `file` when another TPM sealed it
// or it is damaged. The caller wipes what it gets.
std::string Unseal(Tpm& tpm, const std::string& sealed, const std::filesystem::path& file);

}  // namespace outpost::tpm
