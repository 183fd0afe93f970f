#include "http/tls_context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/logging.h"

namespace outpost::http {
namespace {

namespace fs = std::filesystem;

std::string OpenSslError() {
  char buf[256];
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown error";
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

fs::file_time_type TimeOf(const fs::path& p) {
  std::error_code ec;
  if (p.empty()) return {};
  auto t = fs::last_write_time(p, ec);
  return ec ? fs::file_time_type{} : t;
}

}  // namespace

TlsContext::TlsContext(TlsFiles files) : files_(std::move(files)) {
  RequirePrivateFile(files_.key);
  cert_time_ = TimeOf(files_.cert);
  key_time_ = TimeOf(files_.key);
  ca_time_ = TimeOf(files_.client_ca);
  ctx_ = Load();
  next_check_ = std::chrono::steady_clock::now() + files_.reload;
}

TlsContext::~TlsContext() = default;

std::shared_ptr<SSL_CTX> TlsContext::Load() const {
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  auto bad = [&](const std::string& what) {
    Fail(ErrorCode::kInvalidArgument, "TLS: " + what + ": " + OpenSslError());
  };
  if (!ctx) bad("no context");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                  SSL_MODE_RELEASE_BUFFERS);
  // Resumption within this context: a client reconnecting skips the key exchange.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_SERVER);
  static const unsigned char kId[] = "outpost-http";
  SSL_CTX_set_session_id_context(ctx.get(), kId, sizeof kId - 1);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), files_.cert.c_str()) != 1)
    bad("certificate " + files_.cert.string());
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), files_.key.c_str(), SSL_FILETYPE_PEM) != 1)
    bad("key " + files_.key.string());
  if (SSL_CTX_check_private_key(ctx.get()) != 1) bad("the key does not match the certificate");
  if (!files_.client_ca.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), files_.client_ca.c_str(), nullptr) != 1)
      bad("client CA " + files_.client_ca.string());
    // Asked for, verified when sent, not required: clients without one present API keys.
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_client_CA_list(ctx.get(), SSL_load_client_CA_file(files_.client_ca.c_str()));
  }
  return ctx;
}

SSL* TlsContext::NewConnection(int fd) {
  std::shared_ptr<SSL_CTX> ctx;
  {
    std::lock_guard lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_check_) {
      next_check_ = now + files_.reload;
      auto cert = TimeOf(files_.cert), key = TimeOf(files_.key), ca = TimeOf(files_.client_ca);
      if (cert != cert_time_ || key != key_time_ || ca != ca_time_) {
        try {
          ctx_ = Load();
          cert_time_ = cert;
          key_time_ = key;
          ca_time_ = ca;
          Log(LogSeverity::kInfo, "serving", "tls_reloaded",
              "TLS certificate reloaded from " + files_.cert.string());
        } catch (const Error& e) {
          Log(LogSeverity::kWarn, "serving", "tls_reload_failed",
              std::string("TLS files changed but cannot be used (keeping the old ones): ") +
                  e.what());
        }
      }
    }
    ctx = ctx_;
  }
  SSL* ssl = SSL_new(ctx.get());  // holds its own reference to the context
  if (!ssl) return nullptr;
  SSL_set_fd(ssl, fd);
  SSL_set_accept_state(ssl);
  return ssl;
}

std::string TlsContext::PeerSubject(SSL* ssl) {
  if (!ssl || SSL_get_verify_result(ssl) != X509_V_OK) return "";
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (!cert) return "";
  BIO* bio = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  X509_free(cert);
  return out;
}

}  // namespace outpost::http
