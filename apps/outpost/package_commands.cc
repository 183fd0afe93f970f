#include "package_commands.h"
#include "agent_client.h"

#include <httplib.h>
#include <unistd.h>

#include <iostream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "package/package.h"
#include "runtime/model.h"
#include "serving/model_config.h"
#include "update/tuf_signer.h"

namespace outpost {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct Options {
  std::string url;
  std::vector<std::string> public_keys;
  int threshold = 1;
  std::string name, dir = ".", input, output, key, trust, repository, key_type = "ed25519";
  bool as_json = false, allow_unsigned = false;
};
Options& Opts() {
  static Options o;
  return o;
}

int KeyGenerate() {
  auto& o = Opts();
  fs::path base = fs::path(o.dir) / o.name;
  fs::create_directories(o.dir);
  tuf::Signer key = o.key_type == "ecdsa" ? tuf::Signer::GenerateEcdsa(o.name)
                                          : tuf::Signer::FromEd25519(GenerateSigningKey(o.name));
  key.Save(base.string() + ".key", base.string() + ".pub");
  // Ed25519 keys are named by the hash of the raw key (packages) and ECDSA keys by their TUF id.
  const std::string keyid =
      o.key_type == "ecdsa" ? key.keyid() : LoadPublicKey(base.string() + ".pub").keyid;
  if (o.as_json) {
    std::cout << json{{"keyid", keyid},
                      {"key", base.string() + ".key"},
                      {"public", base.string() + ".pub"}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << "keyid " << keyid << "\nsecret key " << base.string()
              << ".key (mode 0600)\npublic key " << base.string() << ".pub\n";
  }
  return 0;
}

// Uploads with a progress bar on stderr (when it is a terminal) and prints what the agent
// installed.
int InstallToAgent() {
  auto& o = Opts();
  std::string data = ReadFile(o.input);
  httplib::Client client = AgentClient(o.url);
  client.set_connection_timeout(3);
  client.set_write_timeout(300);
  client.set_read_timeout(300);
  const bool tty = ::isatty(2);
  size_t last_percent = 101;
  auto res = client.Post(
      "/v2/repository/packages", data.size(),
      [&](size_t offset, size_t length, httplib::DataSink& sink) {
        size_t n = std::min<size_t>(length, 1 << 20);
        sink.write(data.data() + offset, n);
        size_t percent = (offset + n) * 100 / std::max<size_t>(1, data.size());
        if (tty && percent != last_percent) {
          last_percent = percent;
          std::string bar(percent / 5, '#');
          bar.resize(20, ' ');
          std::cerr << "\rupload [" << bar << "] " << percent << "% of " << data.size() / 1024
                    << " KiB" << std::flush;
        }
        return true;
      },
      "application/octet-stream");
  if (tty) std::cerr << "\n";
  if (!res) {
    std::cerr << "outpost: cannot reach the agent at " << o.url << ": "
              << httplib::to_string(res.error()) << "\n";
    return 3;
  }
  auto body = json::parse(res->body, nullptr, false);
  if (res->status != 201) {
    std::cerr << "outpost: the agent refused the package (" << res->status
              << "): " << (body.is_object() ? body.value("error", res->body) : res->body) << "\n";
    return 1;
  }
  std::cout << "installed " << body.value("name", "") << " " << body.value("version", "") << " on "
            << o.url << "\n";
  return 0;
}

int KeyTrust() {
  auto& o = Opts();
  json keys = json::array();
  for (const auto& p : o.public_keys) {
    PublicKey k = LoadPublicKey(p);
    keys.push_back({{"keyid", k.keyid}, {"public", ToHex(k.public_key)}, {"name", k.name}});
  }
  json trust = {{"threshold", o.threshold}, {"keys", keys}, {"revoked", json::array()}};
  ParseTrustPolicy(trust.dump());  // refuses a threshold the keys cannot reach
  WriteFileAtomically(o.output, trust.dump(2) + "\n");
  std::cout << o.output << ": " << keys.size() << " key(s), threshold " << o.threshold << "\n";
  return 0;
}

// The model must load in its runtime and agree with what the manifest declares.
void CheckModel(const PackageManifest& m, const fs::path& dir) {
  Manifest serving = ParseManifest(RepositoryManifest(m).dump());
  RuntimeOptions options;
  ApplyDeclaredTensors(serving, options);
  auto model = LoadModel(serving.runtime, dir / m.model_file, options);
  BuildModelConfig(m.name, m.version, dir / m.model_file, model->inputs(), model->outputs(),
                   serving);
}

int Pack() {
  auto& o = Opts();
  fs::path dir = o.input;
  auto tmpl = json::parse(ReadFile(dir / "manifest.json"), nullptr, false);
  if (tmpl.is_discarded())
    Fail(ErrorCode::kInvalidArgument, (dir / "manifest.json").string() + ": not valid JSON");
  PackageManifest m = ManifestForDirectory(tmpl, dir);
  if (IsModelRuntime(m.json.value("runtime", "onnx"))) CheckModel(m, dir);
  fs::path out =
      o.output.empty() ? fs::path(m.name + "-" + m.version + ".opkg") : fs::path(o.output);
  WritePackage(out, m, dir);
  uint64_t total = 0;
  for (const auto& f : m.files) total += f.size;
  std::cout << out.string() << ": " << m.name << " " << m.version << ", " << m.files.size()
            << " files, " << total << " bytes (unsigned: run outpost sign)\n";
  return 0;
}

int SignCommand() {
  auto& o = Opts();
  SigningKey key = LoadSigningKey(o.key);
  SignPackage(o.input, key);
  std::cout << o.input << ": signed by " << key.pub.keyid << "\n";
  return 0;
}

json ReportJson(const PackageReport& r, bool verified) {
  json sigs = json::array();
  for (const auto& s : r.signatures) sigs.push_back({{"keyid", s.keyid}, {"status", s.status}});
  return {{"verified", verified},
          {"manifest", r.manifest.json},
          {"signatures", sigs},
          {"valid_signatures", r.valid_signatures}};
}

int Verify() {
  auto& o = Opts();
  TrustPolicy trust = LoadTrustPolicy(o.trust);
  PackageReport r = VerifyPackageFile(o.input, &trust);
  if (o.as_json) {
    std::cout << ReportJson(r, true).dump(2) << "\n";
  } else {
    std::cout << o.input << ": OK, " << r.manifest.name << " " << r.manifest.version << ", "
              << r.valid_signatures << " of " << trust.threshold << " required signature(s), "
              << r.manifest.files.size() << " files verified\n";
  }
  return 0;
}

int Inspect() {
  auto& o = Opts();
  std::optional<TrustPolicy> trust;
  if (!o.trust.empty()) trust = LoadTrustPolicy(o.trust);
  PackageReport r = VerifyPackageFile(o.input, trust ? &*trust : nullptr);
  if (o.as_json) {
    std::cout << ReportJson(r, trust.has_value()).dump(2) << "\n";
    return 0;
  }
  const auto& j = r.manifest.json;
  std::cout << "package     " << r.manifest.name << " " << r.manifest.version << "\n";
  if (j.contains("description"))
    std::cout << "description " << j["description"].get<std::string>() << "\n";
  std::cout << "runtime     " << j.value("runtime", "") << ", model " << r.manifest.model_file
            << "\n";
  if (j.contains("min_agent_version"))
    std::cout << "needs agent " << j["min_agent_version"].get<std::string>() << "+\n";
  if (j.contains("provenance")) {
    for (const auto& [k, v] : j["provenance"].items())
      std::cout << "provenance  " << k << ": " << (v.is_string() ? v.get<std::string>() : v.dump())
                << "\n";
  }
  for (const auto& f : r.manifest.files)
    std::cout << "file        " << f.path << " " << f.size << " bytes sha256:" << f.sha256 << "\n";
  for (const auto& s : r.signatures)
    std::cout << "signature   " << s.keyid << " (" << s.status << ")\n";
  if (r.signatures.empty()) std::cout << "signature   none\n";
  return 0;
}

// Into a repository directory (staging, then an atomic rename), or uploaded to a running
// agent, which verifies it against its own trust file.
int Install() {
  auto& o = Opts();
  if (!o.url.empty()) return InstallToAgent();
  if (o.repository.empty())
    Fail(ErrorCode::kInvalidArgument, "install needs --repository DIR or --url URL");
  std::optional<TrustPolicy> trust;
  if (!o.allow_unsigned) {
    if (o.trust.empty())
      Fail(ErrorCode::kInvalidArgument,
           "install needs --trust (or --allow-unsigned for development)");
    trust = LoadTrustPolicy(o.trust);
  }
  PackageReport r = InstallPackage(o.input, o.repository, trust ? &*trust : nullptr);
  std::cout << "installed " << r.manifest.name << " " << r.manifest.version << " into "
            << (fs::path(o.repository) / r.manifest.name / r.manifest.version).string() << "\n";
  return 0;
}

}  // namespace

void AddPackageCommands(CLI::App& app) {
  auto& o = Opts();
  auto* key = app.add_subcommand("key", "Manage signing keys");
  auto* gen = key->add_subcommand(
      "generate", "Create a key pair: NAME.key (mode 0600) and NAME.pub (Ed25519 by default)");
  gen->add_option("name", o.name, "Key name")->required();
  gen->add_option("--type", o.key_type,
                  "ed25519 (packages and TUF metadata) or ecdsa (P-256, TUF metadata only)")
      ->check(CLI::IsMember({"ed25519", "ecdsa"}))
      ->capture_default_str();
  gen->add_option("--dir", o.dir, "Where to write the files")->capture_default_str();
  gen->add_flag("--json", o.as_json, "Print JSON");
  auto* trust = key->add_subcommand("trust", "Write a trust file from public keys");
  trust->add_option("public_keys", o.public_keys, "NAME.pub files")
      ->required()
      ->check(CLI::ExistingFile);
  trust->add_option("--threshold", o.threshold, "Signatures a package needs")
      ->capture_default_str();
  trust->add_option("-o,--output", o.output, "Trust file to write")->required();
  key->require_subcommand(1);

  auto* pack = app.add_subcommand(
      "pack", "Build NAME-VERSION.opkg from DIR (DIR/manifest.json is the template)");
  pack->add_option("dir", o.input, "Directory with manifest.json and the model files")
      ->required()
      ->check(CLI::ExistingDirectory);
  pack->add_option("-o,--output", o.output, "Package file (default NAME-VERSION.opkg)");

  auto* sign = app.add_subcommand("sign", "Add a signature to a package");
  sign->add_option("package", o.input, "Package file")->required()->check(CLI::ExistingFile);
  sign->add_option("--key", o.key, "Secret key file")->required()->check(CLI::ExistingFile);

  auto* verify = app.add_subcommand(
      "verify", "Check a package's files and signatures (exit 0 only when they hold)");
  verify->add_option("package", o.input, "Package file")->required()->check(CLI::ExistingFile);
  verify->add_option("--trust", o.trust, "Trust file")->required()->check(CLI::ExistingFile);
  verify->add_flag("--json", o.as_json, "Print JSON");

  auto* inspect = app.add_subcommand("inspect", "Show a package's manifest, files and signatures");
  inspect->add_option("package", o.input, "Package file")->required()->check(CLI::ExistingFile);
  inspect->add_option("--trust", o.trust, "Also check signatures against this trust file");
  inspect->add_flag("--json", o.as_json, "Print JSON");

  auto* install =
      app.add_subcommand("install", "Verify a package and install it into a model repository");
  install->add_option("package", o.input, "Package file")->required()->check(CLI::ExistingFile);
  install->add_option("--repository", o.repository, "Model repository directory");
  install->add_option(
      "--url", o.url,
      "Or a running agent, e.g. http://127.0.0.1:8000 (it checks its own trust file)");
  install->add_option("--trust", o.trust, "Trust file");
  install->add_flag("--allow-unsigned", o.allow_unsigned,
                    "Development only: install without checking signatures");
}

int RunPackageCommand(CLI::App& app) {
  if (app.got_subcommand("key")) {
    return app.get_subcommand("key")->got_subcommand("trust") ? KeyTrust() : KeyGenerate();
  }
  if (app.got_subcommand("pack")) return Pack();
  if (app.got_subcommand("sign")) return SignCommand();
  if (app.got_subcommand("verify")) return Verify();
  if (app.got_subcommand("inspect")) return Inspect();
  if (app.got_subcommand("install")) return Install();
  return -1;
}

}  // namespace outpost
