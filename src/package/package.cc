#include "package/package.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_input.h"
#include "package/sha256.h"

namespace outpost {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

[[noreturn]] void Denied(const std::string& what) {
  Fail(ErrorCode::kPermissionDenied, "package: " + what);
}
[[noreturn]] void Bad(const std::string& what) {
  Fail(ErrorCode::kInvalidArgument, "package: " + what);
}

// The members of an existing package, for rewriting it with new signatures.
struct Members {
  std::string manifest;
  std::string signatures;
  std::vector<std::pair<std::string, std::string>> files;
};

Members ReadMembers(const fs::path& path, const PackageLimits& limits) {
  std::string data = ReadFile(path);
  TarReader reader(ReadFromMemory(data), limits.max_file_bytes);
  Members m;
  TarEntry e;
  while (reader.Next(e)) {
    std::string contents = reader.ReadAll();
    if (e.name == "manifest.json") {
      m.manifest = std::move(contents);
    } else if (e.name == "signatures.json") {
      m.signatures = std::move(contents);
    } else {
      m.files.emplace_back(e.name, std::move(contents));
    }
  }
  if (m.manifest.empty()) Bad(path.string() + " has no manifest.json");
  return m;
}

std::string Assemble(const std::string& manifest, const std::string& signatures,
                     const std::vector<std::pair<std::string, std::string>>& files) {
  std::string out;
  TarWriter w(out);
  w.Add("manifest.json", manifest);
  if (!signatures.empty()) w.Add("signatures.json", signatures);
  for (const auto& [name, contents] : files) w.Add(name, contents);
  w.Finish();
  return out;
}

json ParseSignatures(const std::string& text) {
  json j = ParseJson(text, JsonLimits::Document(PackageLimits{}.max_signatures_bytes),
                     "package: signatures.json");
  if (!j.is_object() || !j.contains("signatures") || !j["signatures"].is_array()) {
    Bad("signatures.json is malformed");
  }
  for (const auto& s : j["signatures"]) {
    if (!s.is_object() || !s.contains("keyid") || !s["keyid"].is_string() || !s.contains("sig") ||
        !s["sig"].is_string()) {
      Bad("signatures.json: every signature needs string 'keyid' and 'sig'");
    }
  }
  return j;
}

// Fills report.signatures and report.valid_signatures; with `trust`, throws
// Error(kPermissionDenied) when fewer than its threshold are valid.
void CheckSignatures(const std::string& manifest_text, const json& sigs, const TrustPolicy* trust,
                     PackageReport& report) {
  std::set<std::string> counted;
  for (const auto& s : sigs["signatures"]) {
    SignatureCheck check{s["keyid"].get<std::string>(), ""};
    const PublicKey* key = nullptr;
    if (trust) {
      for (const auto& k : trust->keys) {
        if (k.keyid == check.keyid) key = &k;
      }
    }
    if (!trust) {
      check.status = "not checked";
    } else if (!key) {
      check.status = "unknown key";
    } else if (std::find(trust->revoked.begin(), trust->revoked.end(), check.keyid) !=
               trust->revoked.end()) {
      check.status = "revoked";
    } else if (counted.count(check.keyid)) {
      check.status = "duplicate";
    } else {
      std::string sig;
      try {
        sig = FromHex(s["sig"].get<std::string>(), "signature");
      } catch (const Error&) {
      }
      check.status = VerifySignature(*key, manifest_text, sig) ? "valid" : "bad signature";
      if (check.status == "valid") counted.insert(check.keyid);
    }
    report.signatures.push_back(check);
  }
  report.valid_signatures = static_cast<int>(counted.size());
  if (trust && report.valid_signatures < trust->threshold) {
    std::string detail;
    for (const auto& c : report.signatures)
      detail += "; " + c.keyid.substr(0, 16) + ": " + c.status;
    Denied("needs " + std::to_string(trust->threshold) +
           " valid signature(s) from trusted keys, has " + std::to_string(report.valid_signatures) +
           (report.signatures.empty() ? " (the package is not signed)" : detail));
  }
}

}  // namespace

PackageManifest ManifestForDirectory(const json& template_json, const fs::path& dir) {
  PackageManifest m = ParsePackageManifest(template_json, /*require_files=*/false);
  std::vector<std::string> names;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator();
       ++it) {
    auto rel = it->path().lexically_relative(dir).generic_string();  // lexical: never follow a link
    auto st = it->symlink_status();
    if (fs::is_symlink(st)) Bad("'" + rel + "' is a symlink; packages hold regular files only");
    if (fs::is_directory(st)) continue;
    if (!fs::is_regular_file(st)) Bad("'" + rel + "' is not a regular file");
    if (rel == "manifest.json") continue;
    if (!IsSafeMemberName(rel) || rel == "signatures.json")
      Bad("file name '" + rel + "' cannot be packed");
    names.push_back(rel);
  }
  std::sort(names.begin(), names.end());
  json files = json::array();
  for (const auto& n : names) {
    uint64_t size = 0;
    std::string sha = Sha256File(dir / n, &size);
    files.push_back({{"path", n}, {"sha256", sha}, {"size", size}});
  }
  json full = m.json;
  full["files"] = files;
  return ParsePackageManifest(full);
}

void WritePackage(const fs::path& out, const PackageManifest& manifest, const fs::path& dir) {
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& f : manifest.files) {
    std::string contents = ReadFile(dir / f.path);
    if (contents.size() != f.size || Sha256Hex(contents) != f.sha256)
      Bad("'" + f.path + "' changed while packing");
    files.emplace_back(f.path, std::move(contents));
  }
  WriteFileAtomically(out, Assemble(manifest.Canonical(), "", files));
}

void SignPackage(const fs::path& package, const SigningKey& key) {
  PackageLimits limits;
  Members m = ReadMembers(package, limits);
  PackageManifest manifest = ParsePackageManifestText(m.manifest);
  if (manifest.Canonical() != m.manifest) Bad("manifest.json is not in canonical form; repack it");
  json sigs =
      m.signatures.empty() ? json{{"signatures", json::array()}} : ParseSignatures(m.signatures);
  json kept = json::array();
  for (const auto& s : sigs["signatures"]) {
    if (s["keyid"] != key.pub.keyid) kept.push_back(s);
  }
  kept.push_back({{"keyid", key.pub.keyid}, {"sig", ToHex(Sign(key, m.manifest))}});
  std::sort(kept.begin(), kept.end(),
            [](const json& a, const json& b) { return a["keyid"] < b["keyid"]; });
  WriteFileAtomically(package, Assemble(m.manifest, json{{"signatures", kept}}.dump(), m.files));
}

PackageReport VerifyPackage(const ReadFn& read, const TrustPolicy* trust,
                            const PackageLimits& limits, const fs::path* extract_to) {
  TarReader reader(read, limits.max_file_bytes);
  TarEntry e;
  if (!reader.Next(e)) Bad("empty archive");
  if (e.name != "manifest.json")
    Bad("the first member must be manifest.json, found '" + e.name + "'");
  if (e.size > limits.max_manifest_bytes)
    Bad("manifest.json is " + std::to_string(e.size) + " bytes, over the limit");
  std::string manifest_text = reader.ReadAll();
  PackageReport report;
  bool more = reader.Next(e);
  json sigs = {{"signatures", json::array()}};
  if (more && e.name == "signatures.json") {
    if (e.size > limits.max_signatures_bytes) Bad("signatures.json is too large");
    report.signatures_text = reader.ReadAll();
    sigs = ParseSignatures(report.signatures_text);
    more = reader.Next(e);
  }
  // The signatures cover the manifest's bytes: with a trust policy they are checked before the
  // manifest is parsed at all, so what a stranger wrote is never read further.
  if (trust) CheckSignatures(manifest_text, sigs, trust, report);
  report.manifest = ParsePackageManifestText(manifest_text);
  if (report.manifest.Canonical() != manifest_text) Bad("manifest.json is not in canonical form");
  if (!trust) CheckSignatures(manifest_text, sigs, trust, report);

  // Files: exactly the manifest's, in its order, each checked before it is trusted.
  size_t index = 0;
  for (; more; more = reader.Next(e), ++index) {
    if (index >= report.manifest.files.size())
      Denied("'" + e.name + "' is not listed in the manifest");
    const PackageFile& f = report.manifest.files[index];
    if (e.name != f.path)
      Denied("found '" + e.name + "' where the manifest lists '" + f.path + "'");
    if (e.size != f.size) {
      Denied("'" + f.path + "' is " + std::to_string(e.size) + " bytes, the manifest says " +
             std::to_string(f.size));
    }
    int fd = -1;
    if (extract_to) {
      fs::path target = *extract_to / f.path;
      fs::create_directories(target.parent_path());
      fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
      if (fd < 0)
        Fail(ErrorCode::kInternal,
             "cannot create " + target.string() + ": " + std::strerror(errno));
    }
    Sha256 h;
    try {
      reader.ReadContents([&](std::string_view chunk) {
        h.Update(chunk);
        for (size_t done = 0; fd >= 0 && done < chunk.size();) {
          ssize_t n = ::write(fd, chunk.data() + done, chunk.size() - done);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) Fail(ErrorCode::kInternal, "write " + f.path + ": " + std::strerror(errno));
          done += static_cast<size_t>(n);
        }
      });
      if (fd >= 0 && ::fsync(fd) != 0)
        Fail(ErrorCode::kInternal, "fsync " + f.path + ": " + std::strerror(errno));
    } catch (...) {
      if (fd >= 0) ::close(fd);
      throw;
    }
    if (fd >= 0) ::close(fd);
    if (h.HexDigest() != f.sha256)
      Denied("'" + f.path + "' does not match its sha256 in the manifest (tampered or corrupted)");
  }
  if (index < report.manifest.files.size())
    Denied("'" + report.manifest.files[index].path + "' is missing");
  // Whatever follows the end-of-archive marker must be zero padding.
  char buf[4096];
  for (size_t n; (n = read(buf, sizeof buf)) > 0;) {
    if (!std::all_of(buf, buf + n, [](char c) { return c == 0; }))
      Denied("data after the end of the archive");
  }
  return report;
}

PackageReport VerifyPackageFile(const fs::path& path, const TrustPolicy* trust,
                                const PackageLimits& limits, const fs::path* extract_to) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    Fail(ErrorCode::kNotFound, "cannot open " + path.string() + ": " + std::strerror(errno));
  try {
    auto report = VerifyPackage(
        [fd](char* buf, size_t n) -> size_t {
          while (true) {
            ssize_t r = ::read(fd, buf, n);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) Fail(ErrorCode::kInternal, std::string("read: ") + std::strerror(errno));
            return static_cast<size_t>(r);
          }
        },
        trust, limits, extract_to);
    ::close(fd);
    return report;
  } catch (...) {
    ::close(fd);
    throw;
  }
}

}  // namespace outpost

namespace outpost {

void RecordInstalledPackage(const fs::path& version_dir, const std::string& manifest_text,
                            const std::string& signatures_text) {
  fs::create_directories(version_dir / kInstalledPackageDir);
  WriteFileAtomically(version_dir / kInstalledPackageDir / "manifest.json", manifest_text);
  WriteFileAtomically(
      version_dir / kInstalledPackageDir / "signatures.json",
      signatures_text.empty() ? json{{"signatures", json::array()}}.dump() : signatures_text);
}

void RebuildPackage(const fs::path& version_dir, const fs::path& out) {
  fs::path record = version_dir / kInstalledPackageDir;
  std::string manifest_text = ReadFile(record / "manifest.json");
  std::string signatures_text = ReadFile(record / "signatures.json");
  PackageManifest manifest = ParsePackageManifestText(manifest_text);
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& f : manifest.files) files.emplace_back(f.path, ReadFile(version_dir / f.path));
  WriteFileAtomically(out, Assemble(manifest_text, signatures_text, files));
}

PackageReport VerifyInstalledVersion(const fs::path& version_dir, const TrustPolicy& trust) {
  fs::path record = version_dir / kInstalledPackageDir;
  std::string manifest_text = ReadFile(record / "manifest.json");
  PackageReport report;
  report.manifest = ParsePackageManifestText(manifest_text);
  if (report.manifest.Canonical() != manifest_text)
    Denied("installed manifest is not in canonical form");
  CheckSignatures(manifest_text, ParseSignatures(ReadFile(record / "signatures.json")), &trust,
                  report);
  for (const auto& f : report.manifest.files) {
    fs::path p = version_dir / f.path;
    if (fs::is_symlink(p)) Denied("'" + f.path + "' is a symlink");
    uint64_t size = 0;
    std::string sha;
    try {
      sha = Sha256File(p, &size);
    } catch (const Error&) {
      Denied("'" + f.path + "' is missing");
    }
    if (size != f.size)
      Denied("'" + f.path + "' is " + std::to_string(size) + " bytes, the signed manifest says " +
             std::to_string(f.size));
    if (sha != f.sha256)
      Denied("'" + f.path + "' does not match its sha256 in the signed manifest (changed on disk)");
  }
  return report;
}

}  // namespace outpost

namespace outpost {

namespace {

void RemoveStaleStaging(const fs::path& model_dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(model_dir, ec)) {
    std::string n = e.path().filename().string();
    auto at = n.rfind(".staging-");
    if (n.empty() || n[0] != '.' || at == std::string::npos) continue;
    pid_t pid = static_cast<pid_t>(std::atoi(n.c_str() + at + 9));
    if (pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM)) continue;  // its installer still runs
    fs::remove_all(e.path(), ec);
  }
}

}  // namespace

PackageReport InstallPackage(const fs::path& package, const fs::path& repository,
                             const TrustPolicy* trust) {
  // A first pass learns the name and version, so the staging directory can sit beside its target.
  PackageReport head = VerifyPackageFile(package, trust);
  fs::path model_dir = repository / head.manifest.name;
  fs::path target = model_dir / head.manifest.version;
  fs::create_directories(model_dir);
  RemoveStaleStaging(model_dir);
  if (fs::exists(target)) Fail(ErrorCode::kFailedPrecondition, target.string() + " already exists");
  uint64_t needed = 0;
  for (const auto& f : head.manifest.files) needed += f.size;
  if (auto space = fs::space(model_dir); space.available < needed + (64u << 20)) {
    Fail(ErrorCode::kResourceExhausted,
         "installing needs " + std::to_string(needed) + " bytes plus a 64 MiB margin, " +
             std::to_string(space.available) + " are free in " + model_dir.string());
  }
  fs::path staging =
      model_dir / ("." + head.manifest.version + ".staging-" + std::to_string(::getpid()));
  fs::remove_all(staging);
  fs::create_directory(staging);
  try {
    PackageReport r = VerifyPackageFile(package, trust, {}, &staging);
    if (r.manifest.Canonical() != head.manifest.Canonical())
      Denied("the package changed while installing");
    if (r.manifest.json.value("runtime", "onnx") == "agent") {
      // An agent build: its entry point runs. Set before the rename, so no half-made slot runs.
      fs::permissions(staging / r.manifest.model_file,
                      fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec,
                      fs::perm_options::add);
    }
    WriteFileAtomically(staging / "manifest.json", RepositoryManifest(r.manifest).dump(2) + "\n");
    RecordInstalledPackage(staging, r.manifest.Canonical(), r.signatures_text);
    fs::rename(staging, target);
    // fsync the model directory so the rename itself survives a power cut.
    int dfd = ::open(model_dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
    return r;
  } catch (...) {
    std::error_code ec;
    fs::remove_all(staging, ec);
    throw;
  }
}

}  // namespace outpost
