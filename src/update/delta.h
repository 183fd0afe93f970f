// Binary deltas between two versions of a file: zstd with the old file as the dictionary
// ("patch-from"), so a device that has version N fetches only what changed in N+1. The delta
// is itself a signed target; the file it produces is then checked against the full file's
// signed length and hash, so a wrong base or a bad delta can only fail, never install.
#pragma once

#include <cstdint>
#include <filesystem>

namespace outpost::tuf {

// Writes the delta that turns `base` into `target` to `out` (atomically).
void MakeDelta(const std::filesystem::path& base, const std::filesystem::path& target,
               const std::filesystem::path& out, int level = 9);

// Rebuilds the target from `base` and `delta` into `out`, refusing to produce more than
// `max_length` bytes. Throws Error(kInvalidArgument) for a corrupt delta or the wrong base
// (zstd's frame checksum), Error(kPermissionDenied) beyond `max_length`.
void ApplyDelta(const std::filesystem::path& base, const std::filesystem::path& delta,
                const std::filesystem::path& out, uint64_t max_length);

}  // namespace outpost::tuf
