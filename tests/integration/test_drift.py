"""Drift monitoring end to end: a model whose manifest monitors an input and an output, a
reference taken from the first requests, then a shifted input stream. The shift must raise
drift events (metric, /v2/monitoring, log) that reach an OTLP receiver through the outbox;
the in-control stream before it must raise none."""
import json
import os
import re
import shutil
import tempfile
import time
import unittest

import numpy as np

from agent import FIXTURES, Agent
from test_outbox import OtlpReceiver


class DriftTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="outpost-drift-")
        self.repo = os.path.join(self.tmp, "repo")
        shutil.copytree(os.path.join(FIXTURES, "add_mul", "1"), os.path.join(self.repo, "add_mul", "1"))
        with open(os.path.join(self.repo, "add_mul", "1", "manifest.json"), "w") as f:
            json.dump({"monitoring": {"window": 200, "tensors": {
                "a": {"reference_size": 200}, "sum": {"reference_size": 200}}}}, f)
        self.rx = OtlpReceiver()
        config = os.path.join(self.tmp, "config.json")
        with open(config, "w") as f:
            json.dump({"telemetry_otlp_url": self.rx.url, "device_id": "drift-test-device",
                       "telemetry_dir": os.path.join(self.tmp, "telemetry")}, f)
        self.agent = Agent(self.repo, ["--config", config], grpc=False)

    def tearDown(self):
        self.agent.close()
        self.rx.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def drift_events(self):
        _, _, raw = self.agent.request("GET", "/metrics")
        return sum(float(v) for v in re.findall(
            r'(?m)^outpost_model_drift_events_total\{[^}]*model="add_mul"[^}]*\} (\S+)$', raw.decode()))

    def send(self, rng, n, shift):
        for _ in range(n):
            a = (rng.standard_normal((1, 4)) + shift).astype(np.float32)
            b = rng.standard_normal((1, 4)).astype(np.float32)
            status, body = self.agent.infer_json("add_mul", {"a": a, "b": b})
            self.assertEqual(status, 200, body)

    def test_shift_raises_drift_events_that_reach_the_collector(self):
        rng = np.random.default_rng(5)
        self.send(rng, 600, 0.0)  # 200 for the reference, two quiet windows
        self.assertEqual(self.drift_events(), 0, "false alarm on an in-control stream")
        status, mon = self.agent.get_json("/v2/monitoring")
        self.assertEqual(status, 200)
        tensors = {t["tensor"]: t for t in mon[0]["tensors"]}
        self.assertTrue(tensors["a"]["reference_ready"])
        self.assertLess(tensors["a"]["last_window"]["psi"], 0.25)
        self.send(rng, 400, 1.0)
        self.assertGreater(self.drift_events(), 0)
        _, mon = self.agent.get_json("/v2/monitoring")
        tensors = {t["tensor"]: t for t in mon[0]["tensors"]}
        self.assertGreater(tensors["a"]["drift_events"], 0)
        self.assertGreater(tensors["a"]["last_window"]["psi"], 0.25)
        deadline = time.time() + 20
        drift = []
        while time.time() < deadline and not drift:
            drift = [r for r in self.rx.records if r[1]["outpost.kind"]["stringValue"] == "drift"]
            time.sleep(0.1)
        self.assertTrue(drift, "no drift event reached the OTLP receiver")
        device, attrs, body = drift[0]
        self.assertEqual(device, "drift-test-device")
        self.assertEqual(attrs["model"]["stringValue"], "add_mul")
        self.assertIn(attrs["tensor"]["stringValue"], ("a", "sum"))
        self.assertIn(attrs["test"]["stringValue"], ("page_hinkley", "psi", "ks"))
        self.assertIn("drift detected", body)

    def test_bad_monitoring_manifest_is_refused_with_the_reason(self):
        with open(os.path.join(self.repo, "add_mul", "1", "manifest.json"), "w") as f:
            json.dump({"monitoring": {"tensors": {"nope": {}}}}, f)
        deadline = time.time() + 20
        reason = ""
        while time.time() < deadline and "nope" not in reason:
            _, index = self.agent.get_json("/v2/repository/index")
            reason = index[0].get("reason", "")
            time.sleep(0.1)
        self.assertIn("no input or output 'nope'", reason)


if __name__ == "__main__":
    unittest.main()


def start_add_mul(tmp, config, manifest=None):
    """An agent serving a copy of add_mul (with `manifest`) under `config` in `tmp`."""
    repo = os.path.join(tmp, "repo")
    shutil.copytree(os.path.join(FIXTURES, "add_mul", "1"), os.path.join(repo, "add_mul", "1"))
    if manifest is not None:
        with open(os.path.join(repo, "add_mul", "1", "manifest.json"), "w") as f:
            json.dump(manifest, f)
    path = os.path.join(tmp, "config.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return Agent(repo, ["--config", path], grpc=False)


class CaptureTest(unittest.TestCase):
    """After drift: the webhook hears of it, and (with consent on both sides) a few inputs are
    captured, capped in number and bytes."""

    def test_webhook_and_capped_capture(self):
        tmp = tempfile.mkdtemp(prefix="outpost-capture-")
        rx = OtlpReceiver()
        try:
            agent = start_add_mul(
                tmp, {"telemetry_otlp_url": rx.url, "telemetry_dir": os.path.join(tmp, "t"),
                      "monitoring_webhook_url": rx.url + "/hook", "monitoring_captures_allowed": True},
                {"monitoring": {"window": 100, "capture": {"samples": 5, "max_bytes": 96},
                                "tensors": {"a": {"reference_size": 100}}}})
            try:
                rng = np.random.default_rng(2)
                for shift in [0.0] * 200 + [2.0] * 200:
                    a = (rng.standard_normal((1, 4)) + shift).astype(np.float32)
                    self.assertEqual(agent.infer_json("add_mul", {"a": a, "b": a})[0], 200)
                deadline = time.time() + 20
                captures = []
                while time.time() < deadline and (not rx.hooks or not captures):
                    captures = [r for r in rx.records if r[1]["outpost.kind"]["stringValue"] == "capture"]
                    time.sleep(0.1)
                time.sleep(1.0)  # anything more would have arrived by now
                captures = [r for r in rx.records if r[1]["outpost.kind"]["stringValue"] == "capture"]
                self.assertTrue(rx.hooks, "the webhook heard nothing")
                self.assertEqual(rx.hooks[0]["event"], "drift")
                self.assertEqual(rx.hooks[0]["model"], "add_mul")
                # 96 bytes allow three requests of two 16-byte tensors, though 5 were asked for
                self.assertEqual(len(captures), 3)
                tensors = json.loads(captures[0][1]["tensors"]["stringValue"])
                self.assertEqual({t["name"] for t in tensors}, {"a", "b"})
                self.assertEqual(tensors[0]["shape"], [1, 4])
            finally:
                agent.close()
        finally:
            rx.close()
            shutil.rmtree(tmp, ignore_errors=True)


class SummaryTest(unittest.TestCase):
    """Aggregates only: per-interval summaries reach the collector and add up exactly."""

    def test_summaries_count_every_inference(self):
        tmp = tempfile.mkdtemp(prefix="outpost-summary-")
        rx = OtlpReceiver()
        try:
            agent = start_add_mul(tmp, {"telemetry_otlp_url": rx.url, "telemetry_summary_secs": 0.3,
                                        "telemetry_dir": os.path.join(tmp, "telemetry"),
                                        "health": {"poll_secs": 0.1}})
            try:
                rng = np.random.default_rng(1)
                for _ in range(50):
                    a = rng.standard_normal((1, 4)).astype(np.float32)
                    self.assertEqual(agent.infer_json("add_mul", {"a": a, "b": a})[0], 200)
                key = "model.add_mul/1.inferences"
                deadline = time.time() + 20
                total = 0
                while time.time() < deadline:
                    summaries = [r[1] for r in rx.records if r[1]["outpost.kind"]["stringValue"] == "summary"]
                    total = sum(int(s[key]["intValue"]) for s in summaries if key in s)
                    if total >= 50:
                        break
                    time.sleep(0.1)
                self.assertEqual(total, 50)
                self.assertIn("device.memory_available_bytes", summaries[0])
                self.assertFalse(any("data" in k or "input" in k for s in summaries for k in s),
                                 "raw inputs must not leave the device")
            finally:
                agent.close()
        finally:
            rx.close()
            shutil.rmtree(tmp, ignore_errors=True)
