"""The fleet dashboard in a real browser: Debian's headless Chromium driven by playwright-core
on a laptop and a phone viewport, against a real outpost-fleet with devices, a halted rollout,
a drift alert and an audit log; screenshots are checked to hold a rendered page."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from PIL import Image

from fleet import Device, FleetServer, make_token

NODE_MODULES = os.environ.get("OUTPOST_NODE_MODULES", "")
CHROMIUM = os.environ.get("OUTPOST_CHROMIUM", "/usr/bin/chromium")


@unittest.skipUnless(NODE_MODULES and os.path.exists(CHROMIUM), "needs playwright-core and chromium (setup.sh)")
class DashboardTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="outpost-dashboard-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.db = "sqlite:" + os.path.join(self.tmp, "fleet.db")
        self.token = make_token(self.db)
        self.server = FleetServer(self.db)
        self.addCleanup(self.server.close)

    def op(self, method, path, body=None):
        status, answer = self.server.op(self.token, method, path, body)
        self.assertLess(status, 300, answer)
        return answer

    def populate(self):
        enroll = self.op("POST", "/api/v1/enrollment-tokens", {"tags": {"site": "berlin"}, "uses": 6})
        devices = [Device(self.server) for _ in range(6)]
        for d in devices:
            self.assertEqual(d.enroll(enroll["token"])[0], 201)
        self.op("PUT", "/api/v1/deployments/vision", {"packages": {"ocr": "4.0.0"}, "selector": {"site": "berlin"}})
        for d in devices:
            d.desired()
            d.report({"vision": {"revision": 1, "status": "installed"}}, models={"ocr": "4.0.0"})
        rollout = self.op("PUT", "/api/v1/deployments/vision", {
            "packages": {"ocr": "4.1.0"}, "selector": {"site": "berlin"},
            "rollout": {"waves": [50, 100], "soak_secs": 0, "max_failure_rate": 0}})["rollout"]
        deadline = time.time() + 30
        while self.op("GET", f"/api/v1/rollouts/{rollout}")["state"] == "running" and time.time() < deadline:
            for d in devices:
                status, state = d.desired()
                if status == 200:
                    rev = state["deployments"]["vision"]
                    d.report({"vision": {"revision": rev, "status": "failed" if rev == 2 else "installed",
                                         "reason": "probe failed"}})
            time.sleep(0.1)
        devices[0].report({"vision": {"revision": 1, "status": "installed"}}, healthy=False)
        # A second deployment with a rollout that waits (an hour of soak), for the controls.
        self.op("PUT", "/api/v1/deployments/audio", {"packages": {"vad": "5.0.0"}, "selector": {"site": "berlin"}})
        self.op("PUT", "/api/v1/deployments/audio", {"packages": {"vad": "5.1.0"}, "selector": {"site": "berlin"},
                                                      "rollout": {"waves": [10, 100], "soak_secs": 3600}})
        batch = {"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [{"logRecords": [{
            "timeUnixNano": str(time.time_ns()), "body": {"stringValue": "drift detected in ocr/4.0.0 x: psi 0.31 past 0.2"},
            "attributes": [{"key": "event.name", "value": {"stringValue": "drift"}},
                           {"key": "model", "value": {"stringValue": "ocr"}},
                           {"key": "version", "value": {"stringValue": "4.0.0"}}]}]}]}]}
        status, _ = devices[1].request("POST", "/api/v1/device/telemetry/v1/logs", batch,
                                       extra={"Idempotency-Key": "b-1"})
        self.assertEqual(status, 200)
        return devices

    def test_every_view_on_a_laptop_and_a_phone(self):
        devices = self.populate()
        shots = os.path.join(self.tmp, "shots")
        os.makedirs(shots)
        out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "dashboard_e2e.cjs")],
                             env={**os.environ, "NODE_PATH": NODE_MODULES, "CHROMIUM": CHROMIUM,
                                  "FLEET_URL": f"http://127.0.0.1:{self.server.port}",
                                  "FLEET_TOKEN": self.token, "SHOTS": shots},
                             capture_output=True, text=True, timeout=240)
        self.assertEqual(out.returncode, 0, out.stderr)
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        for name, s in seen.items():
            with self.subTest(viewport=name):
                self.assertEqual(s["errors"], [])
                self.assertIn("unknown or revoked operator token", s["refused"])
                self.assertIn("6\ndevices", s["Overview"])
                self.assertIn("1\nunhealthy", s["Overview"])
                for d in devices:
                    self.assertIn(d.id, s["Devices"])
                self.assertIn("rolled_back", s["Deployments"])
                self.assertIn("audio 1 → 2", s["afterAction"])
                self.assertIn("wave 1 (50%)", s["Deployments"])
                self.assertIn("drift", s["Alerts"])
                self.assertIn("ocr / 4.0.0", s["Alerts"])
                self.assertIn("Chain verified", s["Audit"])
                self.assertIn("rollout.halt", s["Audit"])
                for view in ("Overview", "Devices", "Deployments", "Alerts", "Audit"):
                    self.assertLessEqual(s[view + "_overflow"], 0, f"{view} scrolls sideways")
        # The laptop paused the rollout and the phone resumed it: both are in the audit log.
        actions = [e["action"] for e in self.op("GET", "/api/v1/audit")]
        self.assertEqual(actions[-2:], ["rollout.pause", "rollout.resume"])
        self.assertEqual(self.op("GET", "/api/v1/rollouts?deployment=audio")[0]["state"], "running")
        # On the phone, tables become stacked cards (no header row); on the laptop they are tables.
        self.assertTrue(seen["laptop"]["theadVisible"])
        self.assertFalse(seen["phone"]["theadVisible"])
        for name in ("laptop", "phone"):
            for view in ("overview", "devices", "deployments", "alerts", "audit"):
                img = Image.open(os.path.join(shots, f"{name}-{view}.png")).convert("RGB")
                self.assertEqual(img.width, 1280 if name == "laptop" else 780)
                # A rendered page: the header bar's dark blue and many colours, not a blank frame.
                colours = img.getcolors(maxcolors=1 << 20)
                self.assertGreater(len(colours), 20, f"{name}-{view} looks blank")
                self.assertEqual(img.getpixel((5, 5)), (0x14, 0x20, 0x2e))
        keep = os.environ.get("OUTPOST_KEEP_SCREENSHOTS")
        if keep:
            shutil.copytree(shots, keep, dirs_exist_ok=True)


if __name__ == "__main__":
    unittest.main()
