// The hashes TUF metadata gives a file (a metadata file in snapshot or timestamp, a target in
// targets): every algorithm listed must be one this client computes, and every one must match.
// sha224, sha256, sha384, sha512 (OpenSSL) and blake2b, blake2b-256, blake2s, the algorithms
// securesystemslib offers.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

namespace outpost::tuf {

bool HashAlgorithmSupported(const std::string& algorithm);

// Lowercase hex of `data` under `algorithm`; Error(kInvalidArgument) for an unknown one.
std::string HashHex(const std::string& algorithm, std::string_view data);

// Throws Error(kPermissionDenied) naming `what` and the algorithm when a hash is unknown or
// differs. An empty map checks nothing (metadata hashes are optional).
void CheckHashes(std::string_view data, const std::map<std::string, std::string>& hashes,
                 const std::string& what);
void CheckFileHashes(const std::filesystem::path& file,
                     const std::map<std::string, std::string>& hashes, const std::string& what);

}  // namespace outpost::tuf
