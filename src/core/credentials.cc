#include "core/credentials.h"

#include <iostream>

#include "core/atomic_file.h"
#include "core/error.h"

namespace outpost {

std::string ReadSecretFile(const std::filesystem::path& path) {
  RequirePrivateFile(path);
  std::string text = ReadFile(path);
  text = text.substr(0, text.find('\n'));
  while (!text.empty() && (text.back() == '\r' || text.back() == ' ')) text.pop_back();
  if (text.empty()) Fail(ErrorCode::kInvalidArgument, path.string() + " is empty");
  return text;
}

bool UrlHasPassword(std::string_view url) {
  if (url.find("password=") != std::string_view::npos) return true;
  const size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return false;
  std::string_view rest = url.substr(scheme + 3);
  const size_t at = rest.find('@');
  if (at == std::string_view::npos) return false;
  const std::string_view userinfo = rest.substr(0, at);
  return userinfo.find('/') == std::string_view::npos &&
         userinfo.find(':') != std::string_view::npos;
}

void WarnSecretOnCommandLine(std::string_view option, std::string_view instead) {
  std::cerr << "warning: " << option
            << " puts a secret on the command line, where every user of this machine can read "
               "it; use "
            << instead << " instead\n";
}

}  // namespace outpost
