#include "secret_command.h"

#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "core/error.h"
#include "secrets/secret_store.h"

namespace outpost {
namespace {

struct SecretOptions {
  std::string store;
  std::string name;
};
SecretOptions& Opts() {
  static SecretOptions o;
  return o;
}

// The value comes from standard input, never from the command line (which `ps` shows to every
// user); on a terminal it is read without echo.
std::string ReadValue() {
  std::string value;
  if (::isatty(STDIN_FILENO)) {
    std::cerr << "value for '" << Opts().name << "' (not shown): ";
    termios old{};
    ::tcgetattr(STDIN_FILENO, &old);
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    std::getline(std::cin, value);
    ::tcsetattr(STDIN_FILENO, TCSANOW, &old);
    std::cerr << "\n";
  } else {
    value.assign(std::istreambuf_iterator<char>(std::cin), {});
    while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
  }
  if (value.empty()) Fail(ErrorCode::kInvalidArgument, "empty value: nothing stored");
  return value;
}

}  // namespace

void AddSecretCommand(CLI::App& app) {
  auto& o = Opts();
  const char* env = std::getenv("OUTPOST_SECRETS_DIR");
  o.store = env ? env : "/var/lib/outpost/secrets";
  auto* secret = app.add_subcommand(
      "secret", "The device's encrypted credential store (API keys for the cloud LLM, ...)");
  secret->require_subcommand(1);
  secret->add_option("--store", o.store, "Store directory (or $OUTPOST_SECRETS_DIR)")
      ->capture_default_str();
  auto* set = secret->add_subcommand("set", "Store NAME; the value is read from standard input");
  auto* rm = secret->add_subcommand("rm", "Delete NAME");
  auto* check = secret->add_subcommand("check", "Exit 0 when NAME exists and decrypts");
  for (auto* c : {set, rm, check}) c->add_option("name", o.name, "Secret name")->required();
  secret->add_subcommand("list", "Names of the stored secrets (never their values)");
}

int RunSecretCommand(CLI::App& app) {
  if (!app.got_subcommand("secret")) return -1;
  auto& o = Opts();
  auto* cmd = app.get_subcommand("secret");
  if (cmd->got_subcommand("set")) {
    SecretStore store(o.store, /*create=*/true);
    store.Set(o.name, ReadValue());
    std::cout << "stored '" << o.name << "' in " << o.store << "\n";
    return 0;
  }
  SecretStore store(o.store);
  if (cmd->got_subcommand("list")) {
    for (const auto& n : store.List()) std::cout << n << "\n";
    return 0;
  }
  if (cmd->got_subcommand("rm")) {
    if (!store.Remove(o.name)) Fail(ErrorCode::kNotFound, "no secret named '" + o.name + "'");
    return 0;
  }
  std::cout << "'" << o.name << "': " << store.Get(o.name).reveal().size() << " bytes, decrypts\n";
  return 0;
}

}  // namespace outpost
