// Drives the telemetry outbox for the store-and-forward tests: appends events 1..N (resuming
// after the last one it stored, so it can be killed at any moment) while the OTLP shipper
// sends them, then waits for the outbox to drain and prints its statistics as JSON.
#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <thread>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/logging.h"
#include "telemetry/otlp_shipper.h"

int main(int argc, char** argv) {
  CLI::App app{"outbox_harness"};
  std::string db, url, device = "dev-1";
  int64_t events = 1000;
  int payload_bytes = 200, high_every = 0, rate = 0, drain_secs = 60;
  uint64_t max_bytes = 64u << 20, file_limit = 0;
  bool ship = false;
  app.add_option("--db", db)->required();
  app.add_option("--url", url);
  app.add_option("--device", device);
  app.add_option("--events", events);
  app.add_option("--payload-bytes", payload_bytes);
  app.add_option("--high-every", high_every, "every Kth event has priority 1 (0: none)");
  app.add_option("--rate", rate, "events per second (0: as fast as possible)");
  app.add_option("--max-bytes", max_bytes);
  app.add_option("--file-size-limit", file_limit, "RLIMIT_FSIZE: a disk that fills up");
  app.add_option("--drain-secs", drain_secs);
  app.add_flag("--ship", ship);
  CLI11_PARSE(app, argc, argv);
  spdlog::set_default_logger(spdlog::stderr_color_mt("harness"));  // stdout carries the JSON
  if (file_limit) {
    std::signal(SIGXFSZ, SIG_IGN);  // writes past the limit fail with EFBIG instead
    rlimit lim{file_limit, file_limit};
    setrlimit(RLIMIT_FSIZE, &lim);
  }
  outpost::Outbox outbox(db, max_bytes);
  outpost::ShipperOptions so;
  so.endpoint = url;
  so.device_id = device;
  so.min_backoff_ms = 20;
  so.max_backoff_ms = 300;
  so.max_items = 100;
  outpost::OtlpShipper shipper(outbox, so);
  if (ship) shipper.Start();
  const std::string filler(static_cast<size_t>(payload_bytes), 'x');
  int64_t failed = 0;
  for (int64_t k = outbox.Counter("produced") + 1; k <= events; ++k) {
    int priority = high_every && k % high_every == 0 ? 1 : 0;
    auto payload = outpost::LogEvent{outpost::LogSeverity::kInfo,
                                     "telemetry",
                                     "test_event",
                                     "event " + std::to_string(k),
                                     {{"k", k}, {"device", device}, {"pad", filler}}}
                       .ToJson()
                       .dump();
    if (!outbox.Append("event", priority, payload, std::make_pair(std::string("produced"), k)))
      ++failed;
    if (ship) shipper.Wake();
    if (rate) std::this_thread::sleep_for(std::chrono::microseconds(1000000 / rate));
  }
  int exit_code = 0;
  if (ship) {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(drain_secs);
    while (outbox.Stats().items > 0 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    shipper.Stop();
    if (outbox.Stats().items > 0) exit_code = 3;
  }
  auto st = outbox.Stats();
  nlohmann::json out = {{"items", st.items},
                        {"bytes", st.bytes},
                        {"dropped", st.dropped},
                        {"shipped_items", st.shipped_items},
                        {"shipped_batches", st.shipped_batches},
                        {"failed_appends", failed},
                        {"produced", outbox.Counter("produced")},
                        {"send_failures", shipper.failures()}};
  std::printf("%s\n", out.dump().c_str());
  return exit_code;
}
