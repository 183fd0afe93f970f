// TLS for the HTTP server: the certificate chain and key (and optionally a CA for client
// certificates) loaded into an OpenSSL context, and loaded again when the files change on disk
// (checked at most once per `reload`): connections already open keep the context they began
// with, new ones get the new one. A reload that fails (a half-written file, a key that does not
// match) keeps the old context and says why in the log.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace outpost::http {

struct TlsFiles {
  std::filesystem::path cert;       // PEM chain
  std::filesystem::path key;        // PEM, 0600
  std::filesystem::path client_ca;  // empty: no client certificates asked for
  std::chrono::milliseconds reload{10000};
};

class TlsContext {
 public:
  // Throws Error(kInvalidArgument) when the files cannot be used.
  explicit TlsContext(TlsFiles files);
  ~TlsContext();

  // A new server-side connection over `fd`, from the current context (reloaded if due).
  SSL* NewConnection(int fd);
  // The verified client certificate's subject (RFC 2253), or "" without one.
  static std::string PeerSubject(SSL* ssl);

 private:
  std::shared_ptr<SSL_CTX> Load() const;
  TlsFiles files_;
  std::mutex mu_;
  std::shared_ptr<SSL_CTX> ctx_;
  std::filesystem::file_time_type cert_time_, key_time_, ca_time_;
  std::chrono::steady_clock::time_point next_check_;
};

}  // namespace outpost::http
