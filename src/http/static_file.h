// Serving a file from disk (the fleet's update repository): sent with sendfile, never read into
// memory, with at most one byte range per request, bounded by the file. A request for several
// ranges gets the whole file (RFC 9110 lets a server ignore Range): a multipart answer would let
// a 7 KB request ask for gigabytes of overlapping ranges.
#pragma once

#include <filesystem>

#include "http/message.h"

namespace outpost::http {

// Answers `req` from `file`: 200, 206 (one range), 416 (unsatisfiable) or 404 (no regular file
// there; symlinks are not followed).
void ServeFile(const std::filesystem::path& file, const Request& req, Response& res,
               const std::string& content_type = "application/octet-stream");

}  // namespace outpost::http
