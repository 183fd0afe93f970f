#include "agent_client.h"

#include <unistd.h>

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "core/credentials.h"

namespace outpost {
namespace {

std::string ApiKey() {
  if (const char* key = std::getenv("OUTPOST_API_KEY"); key && *key) return key;
  if (const char* file = std::getenv("OUTPOST_API_KEY_FILE"); file && *file)
    return ReadSecretFile(file);  // named explicitly: its absence is an error
  if (::access(kDefaultAdminKeyFile, R_OK) == 0) return ReadSecretFile(kDefaultAdminKeyFile);
  return "";
}

}  // namespace

httplib::Client AgentClient(const std::string& url) {
  httplib::Client client(url);
  // An agent serving HTTPS with a certificate from a private CA.
  if (const char* ca = std::getenv("OUTPOST_CA_FILE"); ca && *ca) client.set_ca_cert_path(ca);
  if (std::string key = ApiKey(); !key.empty()) client.set_bearer_token_auth(key);
  return client;
}

std::string AgentError(const httplib::Response& res) {
  auto body = nlohmann::json::parse(res.body, nullptr, false);
  std::string message = res.body;
  if (body.is_object() && body.contains("error")) {
    const auto& e = body["error"];
    message = e.is_string() ? e.get<std::string>() : e.value("message", res.body);
  }
  return "the agent answered " + std::to_string(res.status) + ": " + message;
}

}  // namespace outpost
