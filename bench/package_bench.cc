// Time to verify a 100 MB signed package (every byte hashed once, streaming, signatures
// checked) against `sha256sum` of the same file, both best of N runs with the file in the
// page cache. The target: within 1.3x of sha256sum.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "package/package.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

template <typename F>
double BestSeconds(int runs, F&& f) {
  double best = 1e9;
  for (int i = 0; i < runs; ++i) {
    auto t0 = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

int main(int argc, char** argv) {
  CLI::App app{"package_bench: outpost verify against sha256sum"};
  int mb = 100, runs = 5;
  app.add_option("--mb", mb, "Model size in MiB");
  app.add_option("--runs", runs, "Runs per measurement (best is reported)");
  CLI11_PARSE(app, argc, argv);

  fs::path dir =
      fs::temp_directory_path() / ("outpost-package-bench-" + std::to_string(::getpid()));
  fs::create_directories(dir / "src");
  std::string model(static_cast<size_t>(mb) << 20, '\0');
  std::mt19937_64 rng(1);
  for (size_t i = 0; i + 8 <= model.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(model.data() + i, &v, 8);
  }
  outpost::WriteFileAtomically(dir / "src" / "model.onnx", model);
  model.clear();
  model.shrink_to_fit();
  auto manifest =
      outpost::ManifestForDirectory({{"name", "big"}, {"version", "1.0.0"}}, dir / "src");
  fs::path package = dir / "big-1.0.0.opkg";
  outpost::WritePackage(package, manifest, dir / "src");
  auto key = outpost::GenerateSigningKey("bench");
  outpost::SignPackage(package, key);
  outpost::TrustPolicy trust;
  trust.keys = {key.pub};

  std::string cmd = "sha256sum " + package.string() + " > /dev/null";
  double baseline = BestSeconds(runs, [&] {
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("sha256sum failed");
  });
  // The same SHA-256 implementation as ours (OpenSSL, with the CPU's SHA extensions): the
  // difference to it is the cost of parsing, signature checks and copying.
  std::string openssl = "openssl dgst -sha256 " + package.string() + " > /dev/null";
  double same_hash = BestSeconds(runs, [&] {
    if (std::system(openssl.c_str()) != 0) throw std::runtime_error("openssl dgst failed");
  });
  double verify = BestSeconds(runs, [&] { outpost::VerifyPackageFile(package, &trust); });
  double size_mb = static_cast<double>(fs::file_size(package)) / (1 << 20);
  printf("package %.1f MiB (file in page cache), best of %d runs\n", size_mb, runs);
  printf("sha256sum       %7.1f ms  %7.0f MiB/s\n", baseline * 1e3, size_mb / baseline);
  printf("openssl dgst    %7.1f ms  %7.0f MiB/s\n", same_hash * 1e3, size_mb / same_hash);
  printf("outpost verify  %7.1f ms  %7.0f MiB/s  (%.2fx sha256sum, %.2fx openssl dgst -sha256)\n",
         verify * 1e3, size_mb / verify, verify / baseline, verify / same_hash);
  fs::remove_all(dir);
  return 0;
}
