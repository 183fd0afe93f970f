"""Health by component, the device's resources and load shedding, and systemd's watchdog.

The kernel's figures come from a stand-in /proc and /sys (config "health": proc_root,
sys_root), so a test can make the device hot or short of memory."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import numpy as np

from agent import BIN_DIR, FIXTURES, Agent

OUTPOST = os.path.join(BIN_DIR, "outpost")


class HealthTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="outpost-health-")
        self.repo = os.path.join(self.tmp, "repo")
        shutil.copytree(os.path.join(FIXTURES, "add_mul", "1"), os.path.join(self.repo, "add_mul", "1"))
        self.proc = os.path.join(self.tmp, "proc")
        self.sys = os.path.join(self.tmp, "sys")
        os.makedirs(self.proc)
        os.makedirs(os.path.join(self.sys, "class", "thermal", "thermal_zone0"))
        self.set_figures(temp_c=50, available_kb=8_000_000)
        with open(os.path.join(self.proc, "stat"), "w") as f:
            f.write("cpu  100 0 100 800 0 0 0 0 0 0\n")
        self.config = os.path.join(self.tmp, "config.json")
        with open(self.config, "w") as f:
            json.dump({"health": {"proc_root": self.proc, "sys_root": self.sys, "poll_secs": 0.1,
                                  "max_temperature_c": 80}}, f)
        self.agent = None

    def tearDown(self):
        if self.agent:
            self.agent.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def set_figures(self, temp_c=None, available_kb=None):
        if temp_c is not None:
            with open(os.path.join(self.sys, "class", "thermal", "thermal_zone0", "temp"), "w") as f:
                f.write(f"{int(temp_c * 1000)}\n")
        if available_kb is not None:
            with open(os.path.join(self.proc, "meminfo"), "w") as f:
                f.write(f"MemTotal:       16000000 kB\nMemFree:  1000 kB\nMemAvailable:   {available_kb} kB\n")

    def wait_ready(self, want):
        """Waits for /v2/health/ready to say `want`; returns /v2/health's full report."""
        deadline = time.time() + 10
        while time.time() < deadline:
            status, _, raw = self.agent.request("GET", "/v2/health/ready")
            if (status == 200) == want:
                body = json.loads(raw)
                self.assertEqual(body["ready"], want)
                if not want:
                    self.assertTrue(body["failed"], "not ready without saying why")
                return self.agent.get_json("/v2/health")[1]
            time.sleep(0.05)
        self.fail(f"ready never became {want}: {raw}")

    def infer(self):
        a = np.ones((1, 4), np.float32)
        return self.agent.infer_json("add_mul", {"a": a, "b": a})

    def test_components_and_load_shedding(self):
        self.agent = Agent(self.repo, ["--config", self.config], grpc=False)
        report = self.wait_ready(True)
        self.assertEqual(set(report["components"]),
                         {"runtime", "models", "resources", "storage", "update_client", "cloud_link", "clock"})
        status, health = self.agent.get_json("/v2/health")
        self.assertEqual(health["resources"]["temperature_c"], 50)
        self.assertEqual(health["resources"]["memory_available_bytes"], 8_000_000 * 1024)
        out = subprocess.run([OUTPOST, "status", "--url", f"http://127.0.0.1:{self.agent.http_port}"],
                             capture_output=True, text=True, env=self.agent.cli_env())
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex(out.stdout, r"models\s+ok\s+1 ready")
        self.assertIn("50 °C", out.stdout)

        self.set_figures(temp_c=95)
        report = self.wait_ready(False)
        self.assertEqual(report["components"]["resources"]["state"], "failed")
        self.assertIn("too hot (95", report["components"]["resources"]["detail"])
        status, body = self.infer()
        self.assertEqual(status, 503)
        self.assertIn("shedding load: too hot", body["error"])
        _, _, raw = self.agent.request("GET", "/metrics")
        self.assertRegex(raw.decode(), r"(?m)^outpost_load_shedding 1$")
        shedding = subprocess.run([OUTPOST, "status", "--url", f"http://127.0.0.1:{self.agent.http_port}"],
                                  capture_output=True, text=True, env=self.agent.cli_env())
        self.assertNotEqual(shedding.returncode, 0)
        self.assertNotIn("401", shedding.stderr)  # refused for the heat, not for a credential

        self.set_figures(temp_c=75)  # below the limit but within the margin: still shedding
        time.sleep(0.5)
        self.assertEqual(self.infer()[0], 503)
        self.set_figures(temp_c=60)
        self.wait_ready(True)
        self.assertEqual(self.infer()[0], 200)

        self.set_figures(available_kb=100_000)  # 0.6 % of memory left
        report = self.wait_ready(False)
        self.assertIn("memory low", report["components"]["resources"]["detail"])
        self.set_figures(available_kb=8_000_000)
        self.wait_ready(True)

    def metric(self, pattern):
        _, _, raw = self.agent.request("GET", "/metrics")
        m = re.search(r"(?m)^" + re.escape(pattern) + r" (\S+)$", raw.decode())
        return float(m.group(1)) if m else 0.0

    def test_anomaly_in_the_device_figures(self):
        with open(self.config, "w") as f:
            json.dump({"health": {"proc_root": self.proc, "sys_root": self.sys, "poll_secs": 0.03,
                                  "max_temperature_c": 80}}, f)
        self.agent = Agent(self.repo, ["--config", self.config], grpc=False)
        time.sleep(3.0)  # a baseline of steady 50 °C (30 samples warm it up; ~100 are taken)
        self.assertEqual(self.metric('outpost_anomaly_events_total{figure="temperature_c"}'), 0)
        self.set_figures(temp_c=62)  # hot for this device, though not hot enough to shed load
        deadline = time.time() + 10
        while time.time() < deadline and self.metric('outpost_anomaly_active{figure="temperature_c"}') == 0:
            time.sleep(0.05)
        self.assertEqual(self.metric('outpost_anomaly_active{figure="temperature_c"}'), 1)
        self.assertEqual(self.metric('outpost_anomaly_events_total{figure="temperature_c"}'), 1)
        self.assertEqual(self.infer()[0], 200)  # an anomaly is reported, not shed
        self.set_figures(temp_c=50)
        deadline = time.time() + 10
        while time.time() < deadline and self.metric('outpost_anomaly_active{figure="temperature_c"}') == 1:
            time.sleep(0.05)
        self.assertEqual(self.metric('outpost_anomaly_active{figure="temperature_c"}'), 0)
        self.assertIn("anomaly in temperature_c", self.agent.logs())
        self.assertIn("anomaly over in temperature_c", self.agent.logs())

    def test_log_level_changes_at_run_time(self):
        self.agent = Agent(self.repo, ["--config", self.config], grpc=False)
        self.assertEqual(self.agent.get_json("/v2/logging"), (200, {"level": "info"}))
        status, _, raw = self.agent.request("PUT", "/v2/logging", json.dumps({"level": "debug"}))
        self.assertEqual((status, json.loads(raw)), (200, {"level": "debug"}))
        self.assertEqual(self.agent.get_json("/v2/logging"), (200, {"level": "debug"}))
        status, _, raw = self.agent.request("PUT", "/v2/logging", json.dumps({"level": "loud"}))
        self.assertEqual(status, 400)
        self.assertIn("unknown log level 'loud'", json.loads(raw)["error"])
        self.assertIn("log level changed from info to debug", self.agent.logs())

    def test_systemd_readiness_and_watchdog(self):
        sock_path = os.path.join(self.tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        sock.settimeout(10)
        self.agent = Agent(self.repo, ["--config", self.config], grpc=False,
                           env={"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"})
        messages = []
        deadline = time.time() + 10
        while time.time() < deadline and sum("WATCHDOG=1" in m for m in messages) < 3:
            messages.append(sock.recv(4096).decode())
        sock.close()
        self.assertIn("READY=1", messages[0])
        self.assertGreaterEqual(sum("WATCHDOG=1" in m for m in messages), 3)


if __name__ == "__main__":
    unittest.main()
