"""The fleet server against real processes: enrollment, device identity, operator scopes,
desired state, staged rollouts, telemetry intake and the audit chain, on SQLite and on a real
PostgreSQL."""
import http.server
import hashlib
import json
import math
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest

from agent import BIN_DIR
from fleet import Device, FleetServer, PostgresCluster, fleet_cli, make_token


class FleetTests:
    """Run once per database engine (see the two classes at the end)."""

    def new_db(self):
        raise NotImplementedError

    def tamper(self, sql):
        raise NotImplementedError

    def setUp(self):
        self.db_url = self.new_db()
        self.admin = make_token(self.db_url)
        self.server = FleetServer(self.db_url)
        self.addCleanup(self.server.close)

    def op(self, method, path, body=None, token=None):
        return self.server.op(token or self.admin, method, path, body)

    def enrollment_token(self, tags=None, uses=1, **extra):
        status, body = self.op("POST", "/api/v1/enrollment-tokens",
                               {"tags": tags or {}, "uses": uses, **extra})
        self.assertEqual(status, 201, body)
        return body["token"]

    def enrolled(self, tags=None):
        d = Device(self.server)
        status, body = d.enroll(self.enrollment_token(tags))
        self.assertEqual(status, 201, body)
        return d

    # --- enrollment and identity ------------------------------------------------------------

    def test_enrollment_token_is_one_time_and_tags_the_device(self):
        token = self.enrollment_token({"site": "berlin", "hw": "pi5"})
        first, second = Device(self.server), Device(self.server)
        status, body = first.enroll(token, capabilities={"arch": "aarch64", "memory_mb": 8192})
        self.assertEqual(status, 201, body)
        self.assertTrue(body["device_id"].startswith("dev_"))
        status, body = second.enroll(token)
        self.assertEqual(status, 401)
        self.assertIn("used up", body["error"])
        status, device = self.op("GET", "/api/v1/devices/" + first.id)
        self.assertEqual(status, 200)
        self.assertEqual(device["tags"], {"site": "berlin", "hw": "pi5"})
        self.assertEqual(device["capabilities"]["arch"], "aarch64")
        status, found = self.op("GET", "/api/v1/devices?tag=site:berlin")
        self.assertEqual([d["id"] for d in found], [first.id])
        status, found = self.op("GET", "/api/v1/devices?tag=site:paris")
        self.assertEqual(found, [])

    def test_enrollment_refuses_a_key_the_device_does_not_hold(self):
        token = self.enrollment_token()
        impostor, victim = Device(self.server), Device(self.server)
        impostor.public_hex = victim.public_hex  # claims a key, signs with its own
        status, body = impostor.enroll(token)
        self.assertEqual(status, 401)
        self.assertIn("signature", body["error"])
        # The token was not spent by the failed attempt.
        status, _ = victim.enroll(token)
        self.assertEqual(status, 201)

    def test_expired_enrollment_token_is_refused(self):
        token = self.enrollment_token(expires_in_secs=1)
        time.sleep(1.2)
        status, body = Device(self.server).enroll(token)
        self.assertEqual(status, 401)

    def test_device_requests_without_identity_with_another_identity_replayed_or_revoked(self):
        a, b = self.enrolled(), self.enrolled()
        status, _ = a.desired()
        self.assertEqual(status, 200)
        # No identity at all.
        status, body, _ = self.server.request("GET", "/api/v1/device/desired-state")
        self.assertEqual(status, 401)
        # B's id, signed with A's key.
        status, body = a.request("GET", "/api/v1/device/desired-state", device_id=b.id)
        self.assertEqual(status, 401)
        self.assertIn("signature", body["error"])
        # A replay: the same signed request, byte for byte.
        data = b""
        headers = a.signed_headers("GET", "/api/v1/device/desired-state", data)
        self.assertEqual(self.server.request("GET", "/api/v1/device/desired-state", None, headers)[0], 200)
        status, body, _ = self.server.request("GET", "/api/v1/device/desired-state", None, headers)
        self.assertEqual(status, 401)
        self.assertIn("replayed", body["error"])
        # Signed afresh with an older time inside the 5-minute window (a held-back request, not a
        # byte-for-byte copy): refused too, a device's times only go forward.
        status, body = a.request("GET", "/api/v1/device/desired-state",
                                 time_ms=int(time.time() * 1000) - 30 * 1000)
        self.assertEqual(status, 401)
        self.assertIn("not after the device's last request", body["error"])
        # A signature over another body does not carry to this one.
        headers = a.signed_headers("POST", "/api/v1/device/report", b'{"health": {}}')
        status, _, _ = self.server.request("POST", "/api/v1/device/report",
                                           b'{"health": {"ready": false}}', headers)
        self.assertEqual(status, 401)
        # A request from far in the past.
        status, body = a.request("GET", "/api/v1/device/desired-state",
                                 time_ms=int(time.time() * 1000) - 10 * 60 * 1000)
        self.assertEqual(status, 401)
        self.assertIn("5 minutes", body["error"])
        # Revocation takes effect at once.
        status, _ = self.op("POST", f"/api/v1/devices/{a.id}/revoke")
        self.assertEqual(status, 200)
        status, body = a.desired()
        self.assertEqual(status, 403)
        self.assertIn("revoked", body["error"])
        self.assertEqual(b.desired()[0], 200)

    def test_operator_tokens_are_required_and_scoped(self):
        reader = make_token(self.db_url, "dashboard", "read")
        writer = make_token(self.db_url, "ci", "write")
        deployment = {"packages": {"dense64": "1.0.0"}}
        self.assertEqual(self.server.request("GET", "/api/v1/devices")[0], 401)
        self.assertEqual(self.op("GET", "/api/v1/devices", token="opt_" + "0" * 64)[0], 401)
        self.assertEqual(self.op("GET", "/api/v1/devices", token=reader)[0], 200)
        status, body = self.op("PUT", "/api/v1/deployments/base", deployment, token=reader)
        self.assertEqual(status, 403)
        self.assertIn("needs write", body["error"])
        self.assertEqual(self.op("POST", "/api/v1/enrollment-tokens", {}, token=reader)[0], 403)
        self.assertEqual(self.op("PUT", "/api/v1/deployments/base", deployment, token=writer)[0], 200)
        self.assertEqual(self.op("POST", "/api/v1/tokens", {"name": "x", "scope": "admin"}, token=writer)[0], 403)
        status, made = self.op("POST", "/api/v1/tokens", {"name": "ops", "scope": "write"})
        self.assertEqual(status, 201)
        self.assertEqual(self.op("GET", "/api/v1/deployments", token=made["token"])[0], 200)
        self.assertEqual(self.op("DELETE", "/api/v1/tokens/" + made["id"])[0], 200)
        self.assertEqual(self.op("GET", "/api/v1/deployments", token=made["token"])[0], 401)
        # Tokens are stored hashed: the secret is nowhere in the database or the log (the token's
        # id is, which shows the database was searched).
        stored = self.database_text()
        self.assertTrue(made["id"] in stored, "the token's id is not in the database text")
        self.assertFalse(made["token"] in stored, "the token's secret is in the database")
        self.assertNotIn(made["token"], self.server.logs())

    # --- desired state ----------------------------------------------------------------------

    def test_desired_state_from_base_and_layered_deployments_with_etags(self):
        berlin = self.enrolled({"site": "berlin", "hw": "pi5"})
        paris = self.enrolled({"site": "paris", "hw": "pi4"})
        put = lambda name, body: self.assertEqual(self.op("PUT", "/api/v1/deployments/" + name, body)[0], 200)
        put("base", {"packages": {"dense64": "1.0.0", "silero_vad": "5.0.0"}, "priority": 0})
        put("berlin", {"selector": {"site": "berlin"}, "priority": 10,
                       "packages": {"dense64": "2.0.0", "ocr": "4.0.0"}})
        put("vad-beta", {"selector": {"hw": ["pi5", "jetson"]}, "layered": True, "priority": 5,
                         "packages": {"silero_vad": "5.1.0"}})
        status, state = berlin.desired()
        self.assertEqual(status, 200, state)
        versions = {k: v["version"] for k, v in state["packages"].items()}
        # The higher-priority base wins outright; the layer adds on top.
        self.assertEqual(versions, {"dense64": "2.0.0", "ocr": "4.0.0", "silero_vad": "5.1.0"})
        self.assertEqual(state["deployments"], {"berlin": 1, "vad-beta": 1})
        status, state = paris.desired()
        self.assertEqual({k: v["version"] for k, v in state["packages"].items()},
                         {"dense64": "1.0.0", "silero_vad": "5.0.0"})
        # Unchanged: 304. Changed: a new ETag.
        self.assertEqual(paris.desired()[0], 304)
        put("base", {"packages": {"dense64": "1.1.0", "silero_vad": "5.0.0"}})
        status, state = paris.desired()
        self.assertEqual(status, 200)
        self.assertEqual(state["packages"]["dense64"]["version"], "1.1.0")
        self.assertEqual(state["deployments"], {"base": 2})
        # Retagging moves a device between deployments.
        self.assertEqual(self.op("PUT", f"/api/v1/devices/{paris.id}/tags",
                                 {"tags": {"site": "berlin", "hw": "pi4"}})[0], 200)
        status, state = paris.desired()
        self.assertEqual(status, 200)
        self.assertEqual(state["deployments"], {"berlin": 1})

    def test_bad_deployments_are_refused_with_the_reason(self):
        cases = [({"packages": {}}, "not empty"),
                 ({"packages": {"../x": "1"}}, "bad package name"),
                 ({"packages": {"a": "1"}, "selector": {"site": 3}}, "tag 'site'"),
                 ({"packages": {"a": "1"}, "rollout": {"waves": [50, 10, 100]}}, "increasing"),
                 ({"packages": {"a": "1"}, "rollout": {"waves": [10, 50]}}, "last wave"),
                 ({"packages": {"a": "1"}, "rollout": {"max_failure_rate": 2}},
                  "'rollout.max_failure_rate' must be a number in 0..1"),
                 ({"packages": {"a": "1"}, "colour": "red"}, "unknown field 'colour'")]
        for body, phrase in cases:
            status, answer = self.op("PUT", "/api/v1/deployments/d", body)
            self.assertEqual(status, 400, body)
            self.assertIn(phrase, answer["error"])
        status, answer, _ = self.server.request("PUT", "/api/v1/deployments/d", b"{not json",
                                                {"Authorization": "Bearer " + self.admin})
        self.assertEqual(status, 400)

    # --- rollouts ---------------------------------------------------------------------------

    def fleet_of(self, n, tags=None):
        token = self.enrollment_token(tags or {"group": "canary"}, uses=n)
        devices = []
        for _ in range(n):
            d = Device(self.server)
            self.assertEqual(d.enroll(token)[0], 201)
            devices.append(d)
        return devices

    def run_devices(self, devices, failing, until, timeout=60):
        """Each device polls, 'installs' what it is told (failing ones fail) and reports, until
        until() is true."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for d in devices:
                status, state = d.desired()
                if status == 200:
                    d.state = state
                report = {}
                for name, rev in getattr(d, "state", {"deployments": {}})["deployments"].items():
                    ok = d.id not in failing or rev == 1
                    report[name] = {"revision": rev, "status": "installed" if ok else "failed",
                                    "reason": "" if ok else "probe failed"}
                self.assertEqual(d.report(report)[0], 200)
            if until():
                return
            time.sleep(0.05)
        self.fail("devices did not reach the expected state")

    def rollout(self, rid):
        status, body = self.op("GET", f"/api/v1/rollouts/{rid}")
        self.assertEqual(status, 200)
        return body

    def test_rollout_completes_wave_by_wave_when_devices_succeed(self):
        devices = self.fleet_of(20)
        self.op("PUT", "/api/v1/deployments/app", {"packages": {"dense64": "1.0.0"}})
        self.run_devices(devices, set(), lambda: True)
        status, body = self.op("PUT", "/api/v1/deployments/app", {
            "packages": {"dense64": "2.0.0"},
            "rollout": {"waves": [20, 50, 100], "soak_secs": 0.2, "max_failure_rate": 0.0}})
        self.assertEqual(status, 200, body)
        rid = body["rollout"]
        self.run_devices(devices, set(), lambda: self.rollout(rid)["state"] == "completed")
        r = self.rollout(rid)
        self.assertEqual([s["action"] for s in r["steps"]], ["start", "advance", "advance", "complete"])
        self.assertEqual([s["step"] for s in r["steps"]], [1, 2, 3, 4])
        status, dep = self.op("GET", "/api/v1/deployments/app")
        self.assertEqual(dep["active_revision"], 2)
        for d in devices:
            d.etag = None
            self.assertEqual(d.desired()[1]["packages"]["dense64"]["version"], "2.0.0")

    def test_failing_wave_halts_and_rolls_back(self):
        devices = self.fleet_of(20)
        self.op("PUT", "/api/v1/deployments/app", {"packages": {"dense64": "1.0.0"}})
        self.run_devices(devices, set(), lambda: True)
        failing = {d.id for d in devices}  # every device that gets revision 2 fails it
        status, body = self.op("PUT", "/api/v1/deployments/app", {
            "packages": {"dense64": "2.0.0"},
            "rollout": {"waves": [25, 100], "soak_secs": 0.2, "max_failure_rate": 0.1}})
        rid = body["rollout"]
        self.run_devices(devices, failing, lambda: self.rollout(rid)["state"] == "rolled_back")
        r = self.rollout(rid)
        self.assertEqual(r["wave"], 0)
        self.assertIn("failed", r["reason"])
        self.assertEqual([s["action"] for s in r["steps"]], ["start", "halt"])
        # Every device is told to go back to revision 1.
        for d in devices:
            d.etag = None
            self.assertEqual(d.desired()[1]["deployments"], {"app": 1})
        # And the halt is in the audit log, by the controller.
        status, log = self.op("GET", "/api/v1/audit")
        halts = [e for e in log if e["action"] == "rollout.halt"]
        self.assertEqual(len(halts), 1)
        self.assertTrue(halts[0]["actor"].startswith("fleet:"))

    def test_small_fleets_never_skip_their_canary(self):
        # A wave is a count rounded up: never empty while the fleet is not (a hash threshold
        # left a 1 % canary of 50 devices empty 60 % of the time), and a failing canary always
        # halts the rollout in wave 1.
        status, _ = self.op("PUT", "/api/v1/deployments/ghost",
                            {"selector": {"fleet": "nobody"}, "packages": {"dense64": "1.0.0"}})
        status, body = self.op("PUT", "/api/v1/deployments/ghost", {
            "selector": {"fleet": "nobody"}, "packages": {"dense64": "2.0.0"},
            "rollout": {"waves": [50, 100], "soak_secs": 0}})
        self.assertEqual(status, 200, body)
        ghost = body["rollout"]
        for n in (1, 2, 6, 50):
            for canary in (1, 50):
                with self.subTest(devices=n, canary=canary):
                    name = f"app{n}x{canary}"
                    devices = self.fleet_of(n, {"fleet": name})
                    spec = {"selector": {"fleet": name}, "packages": {"dense64": "1.0.0"}}
                    self.assertEqual(self.op("PUT", f"/api/v1/deployments/{name}", spec)[0], 200)
                    self.run_devices(devices, set(), lambda: True)
                    spec["packages"] = {"dense64": "2.0.0"}
                    spec["rollout"] = {"waves": [canary, 100], "soak_secs": 0.2,
                                       "max_failure_rate": 0.0}
                    status, body = self.op("PUT", f"/api/v1/deployments/{name}", spec)
                    self.assertEqual(status, 200, body)
                    rid = body["rollout"]
                    expected = max(1, math.ceil(canary * n / 100))
                    progress = self.rollout(rid)["progress"]
                    self.assertEqual((progress["selected"], progress["devices"]), (n, expected))
                    for d in devices:
                        d.etag = None
                        d.state = d.desired()[1]
                    told = [d.state["deployments"][name] for d in devices]
                    self.assertEqual(told.count(2), expected)
                    self.run_devices(devices, {d.id for d in devices},
                                     lambda: self.rollout(rid)["state"] != "running")
                    r = self.rollout(rid)
                    self.assertEqual((r["state"], r["wave"]), ("rolled_back", 0))
                    self.assertEqual([s["action"] for s in r["steps"]], ["start", "halt"])
                    halted = r["steps"][-1]["detail"]["progress"]
                    self.assertEqual(halted["devices"], expected)
                    self.assertGreaterEqual(halted["failed"], 1)
        # Meanwhile the controller evaluated the rollout that selects nobody many times over:
        # an empty wave is never a success, so it still waits in wave 1.
        r = self.rollout(ghost)
        self.assertEqual((r["state"], r["wave"], r["progress"]["selected"]), ("running", 0, 0))
        self.assertEqual([s["action"] for s in r["steps"]], ["start"])

    def test_rollout_halts_when_installed_devices_regress_in_error_rate(self):
        devices = self.fleet_of(10)
        self.op("PUT", "/api/v1/deployments/app", {"packages": {"dense64": "1.0.0"}})
        status, body = self.op("PUT", "/api/v1/deployments/app", {
            "packages": {"dense64": "2.0.0"},
            "rollout": {"waves": [50, 100], "soak_secs": 0.2, "max_error_rate": 0.1,
                        "max_latency_ms": 50}})
        rid = body["rollout"]
        deadline = time.time() + 30
        while self.rollout(rid)["state"] == "running" and time.time() < deadline:
            for d in devices:
                status, state = d.desired()
                if status == 200:
                    d.state = state
                rev = d.state["deployments"]["app"]
                # Installs succeed, but the new revision answers badly.
                d.report({"app": {"revision": rev, "status": "installed"}},
                         error_rate=0.4 if rev == 2 else 0.0, latency_ms=12.0)
            time.sleep(0.05)
        r = self.rollout(rid)
        self.assertEqual(r["state"], "rolled_back")
        self.assertIn("failed", r["reason"])
        halt = [s for s in r["steps"] if s["action"] == "halt"][0]
        self.assertIn("error rate 0.4 over 0.1", " ".join(halt["detail"]["progress"]["failures"]))
        # A malformed figure is refused when reported, not left to break the controller.
        status, body = devices[0].report({}, error_rate="high")
        self.assertEqual(status, 400)
        self.assertIn("'health.error_rate' must be a number", body["error"])

    def test_manual_pause_promote_and_abort(self):
        devices = self.fleet_of(10)
        self.op("PUT", "/api/v1/deployments/app", {"packages": {"dense64": "1.0.0"}})
        status, body = self.op("PUT", "/api/v1/deployments/app", {
            "packages": {"dense64": "2.0.0"}, "rollout": {"waves": [10, 50, 100], "soak_secs": 3600}})
        rid = body["rollout"]
        self.assertEqual(self.op("POST", f"/api/v1/rollouts/{rid}/pause")[1]["state"], "paused")
        self.assertEqual(self.op("POST", f"/api/v1/rollouts/{rid}/pause")[0], 409)
        self.assertEqual(self.op("POST", f"/api/v1/rollouts/{rid}/resume")[1]["state"], "running")
        self.assertEqual(self.op("POST", f"/api/v1/rollouts/{rid}/promote")[1]["wave"], 1)
        # While it runs, the deployment cannot be changed under it.
        status, body = self.op("PUT", "/api/v1/deployments/app", {"packages": {"dense64": "3.0.0"}})
        self.assertEqual(status, 409)
        self.assertEqual(self.op("POST", f"/api/v1/rollouts/{rid}/abort")[1]["state"], "aborted")
        self.assertEqual(self.op("POST", f"/api/v1/rollouts/{rid}/promote")[0], 409)
        for d in devices:
            self.assertEqual(d.desired()[1]["deployments"], {"app": 1})

    # --- telemetry --------------------------------------------------------------------------

    def test_otlp_batches_are_counted_once_and_drift_reaches_the_webhook(self):
        received = []

        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=hook.serve_forever, daemon=True).start()
        self.addCleanup(hook.server_close)
        self.addCleanup(hook.shutdown)
        self.server.close()
        self.server = FleetServer(self.db_url, ["--drift-webhook", f"http://127.0.0.1:{hook.server_port}/retrain"])
        self.addCleanup(self.server.close)
        d = self.enrolled()

        def record(event, model, version, msg):
            return {"timeUnixNano": str(time.time_ns()), "severityText": "warn",
                    "body": {"stringValue": msg},
                    "attributes": [{"key": "event.name", "value": {"stringValue": event}},
                                   {"key": "model", "value": {"stringValue": model}},
                                   {"key": "version", "value": {"stringValue": version}},
                                   {"key": "statistic", "value": {"doubleValue": 0.31}}]}

        batch = {"resourceLogs": [{"resource": {"attributes": [
            {"key": "outpost.batch.id", "value": {"stringValue": "inst-1-3"}}]},
            "scopeLogs": [{"logRecords": [record("drift", "dense64", "1.0.0", "drift in x"),
                                          record("summary", "", "", "counts"),
                                          record("anomaly", "", "", "latency anomaly")]}]}]}
        path = "/api/v1/device/telemetry/v1/logs"
        status, body = d.request("POST", path, batch, extra={"Idempotency-Key": "inst-1-3"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["outpost"]["events"], 2)
        status, body = d.request("POST", path, batch, extra={"Idempotency-Key": "inst-1-3"})
        self.assertEqual(status, 200)
        self.assertTrue(body["outpost"]["duplicate"])
        status, events = self.op("GET", "/api/v1/events?model=dense64&version=1.0.0")
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["event"], "drift")
        self.assertEqual(events[0]["device_id"], d.id)
        self.assertEqual(len(self.op("GET", "/api/v1/events")[1]), 2)
        deadline = time.time() + 10
        while not received and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(len(received), 1)
        self.assertEqual(received[0]["event"], "retraining_trigger")
        self.assertEqual(received[0]["model"], "dense64")
        status, body = d.request("POST", path, {"not": "otlp"})
        self.assertEqual(status, 400)

    # --- the operator's command line -------------------------------------------------------

    def cli(self, *args, token=None):
        if not hasattr(self, "cli_state"):  # audit verify keeps signed heads: never in the real home
            self.cli_state = tempfile.mkdtemp(prefix="outpost-cli-state-")
            self.addCleanup(shutil.rmtree, self.cli_state, True)
        env = {**os.environ, "OUTPOST_FLEET_URL": f"http://127.0.0.1:{self.server.port}",
               "OUTPOST_FLEET_TOKEN": token or self.admin, "XDG_STATE_HOME": self.cli_state}
        return subprocess.run([os.path.join(BIN_DIR, "outpost"), "fleet", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    def test_operator_cli(self):
        out = self.cli("enroll-token", "--tag", "site=berlin", "--uses", "2")
        self.assertEqual(out.returncode, 0, out.stderr)
        token = out.stdout.strip()
        self.assertTrue(token.startswith("oet_"))
        self.assertIn("2 use(s)", out.stderr)
        d = Device(self.server)
        self.assertEqual(d.enroll(token)[0], 201)
        out = self.cli("devices", "--tag", "site=berlin")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(d.id, out.stdout)
        self.assertIn("site=berlin", out.stdout)
        out = self.cli("--json", "devices", "--tag", "site=paris")
        self.assertEqual(json.loads(out.stdout), [])
        out = self.cli("deploy", "app", "--package", "dense64=1.0.0", "--selector", "site=berlin,paris")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("app revision 1", out.stdout)
        out = self.cli("deploy", "app", "--package", "dense64=2.0.0", "--selector", "site=berlin,paris",
                       "--waves", "50,100", "--soak", "3600")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("rollout 1 started", out.stdout)
        out = self.cli("rollout", "pause", "1")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("paused", out.stdout)
        out = self.cli("rollout", "show", "1")
        self.assertIn("pause (wave 1) by token:admin", out.stdout)
        self.assertRegex(out.stdout, r"current wave: [01] devices")
        out = self.cli("deployments")
        self.assertIn("dense64=2.0.0", out.stdout)
        self.assertIn("site=[\"berlin\",\"paris\"]", out.stdout)
        out = self.cli("audit", "verify")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("audit log intact", out.stdout)
        out = self.cli("audit")
        self.assertIn("rollout.pause", out.stdout)
        # Refusals: exit 1 with the server's reason; exit 3 when nobody answers.
        reader = make_token(self.db_url, "viewer", "read")
        out = self.cli("revoke", d.id, token=reader)
        self.assertEqual(out.returncode, 1)
        self.assertIn("403", out.stderr)
        out = self.cli("revoke", d.id)
        self.assertEqual(out.returncode, 0, out.stderr)
        env_bad = self.cli("--server", "http://127.0.0.1:1", "devices")
        self.assertEqual(env_bad.returncode, 3)
        self.assertIn("cannot reach the fleet server", env_bad.stderr)

    # --- audit ------------------------------------------------------------------------------

    def test_audit_chain_records_every_change_and_detects_tampering(self):
        d = self.enrolled({"site": "berlin"})
        self.op("PUT", "/api/v1/deployments/app", {"packages": {"dense64": "1.0.0"}})
        self.op("PUT", f"/api/v1/devices/{d.id}/tags", {"tags": {"site": "paris"}})
        self.op("POST", f"/api/v1/devices/{d.id}/revoke")
        status, log = self.op("GET", "/api/v1/audit")
        actions = [e["action"] for e in log]
        self.assertEqual(actions, ["token.create", "enrollment_token.create", "device.enroll",
                                   "deployment.create", "device.tags", "device.revoke"])
        self.assertEqual(log[4]["detail"], {"before": {"site": "berlin"}, "after": {"site": "paris"}})
        self.assertEqual(log[5]["actor"], "token:admin")
        self.assertEqual(log[5]["source"], "127.0.0.1")
        status, verdict = self.op("GET", "/api/v1/audit/verify")
        self.assertEqual((status, verdict["ok"], verdict["entries"]), (200, True, 6))
        out = fleet_cli(self.db_url, "audit", "verify")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        # The engine itself refuses edits...
        self.assertIn("append-only", self.tamper("UPDATE audit_log SET actor = 'someone' WHERE seq = 4"))
        # ...and an edit made around that (triggers dropped) is found.
        self.tamper("DROP TRIGGER audit_log_no_update" if "sqlite" in self.db_url
                    else "DROP TRIGGER audit_log_append_only ON audit_log")
        self.tamper("UPDATE audit_log SET actor = 'someone' WHERE seq = 4")
        out = fleet_cli(self.db_url, "audit", "verify")
        self.assertEqual(out.returncode, 1)
        self.assertIn("entry 4", out.stdout)
        status, verdict = self.op("GET", "/api/v1/audit/verify")
        self.assertEqual((status, verdict["ok"], verdict["first_bad_seq"]), (409, False, 4))

    def test_a_rewritten_audit_history_fails_verify_against_the_signed_head(self):
        keys = tempfile.mkdtemp(prefix="outpost-fleet-keys-")
        self.addCleanup(shutil.rmtree, keys, True)
        out = subprocess.run([os.path.join(BIN_DIR, "outpost"), "key", "generate", "online", "--dir", keys],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.server.close()
        self.server = FleetServer(self.db_url, ["--online-key", os.path.join(keys, "online.key")])
        self.addCleanup(self.server.close)
        d = self.enrolled({"site": "berlin"})
        self.op("PUT", "/api/v1/deployments/app", {"packages": {"dense64": "1.0.0"}})
        self.op("PUT", f"/api/v1/devices/{d.id}/tags", {"tags": {"site": "paris"}})
        state = os.path.join(keys, "heads.json")
        out = self.cli("audit", "verify", "--state", state, "--online-pub", os.path.join(keys, "online.pub"))
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("signed by the online key", out.stdout)
        # The head is also signed into the server's own log (kept apart from the database).
        deadline = time.time() + 10
        while "audit head 5 " not in self.server.logs() and time.time() < deadline:
            time.sleep(0.1)
        self.assertIn("audit head 5 ", self.server.logs())
        # Whoever owns the database rewrites entry 4, every hash after it and the head: the
        # chain is consistent again, and the server's own check cannot tell.
        self.tamper("DROP TRIGGER audit_log_no_update" if "sqlite" in self.db_url
                    else "DROP TRIGGER audit_log_append_only ON audit_log")
        status, log = self.op("GET", "/api/v1/audit")
        prev = log[2]["hash"]
        for e in log[3:]:
            if e["seq"] == 4:
                e["actor"] = "token:someone-else"
            fields = {k: e[k] for k in ("seq", "time_ms", "actor", "action", "target", "detail", "source")}
            canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
            e["hash"] = hashlib.sha256((prev + "\n" + canonical).encode()).hexdigest()
            self.tamper(f"UPDATE audit_log SET actor = '{e['actor']}', prev_hash = '{prev}', "
                        f"hash = '{e['hash']}' WHERE seq = {e['seq']}")
            prev = e["hash"]
        self.tamper(f"UPDATE fleet_meta SET value = '{log[-1]['seq']}:{prev}' WHERE key = 'audit_head'")
        status, verdict = self.op("GET", "/api/v1/audit/verify")
        self.assertEqual((status, verdict["ok"]), (200, True), "the rewrite was not self-consistent")
        out = self.cli("audit", "verify", "--state", state)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("the history was rewritten: entry 5", out.stdout)
        # Cutting entries off the end is caught the same way.
        if "sqlite" in self.db_url:
            self.tamper("DROP TRIGGER audit_log_no_delete")
        self.tamper("DELETE FROM audit_log WHERE seq = 5")
        self.tamper(f"UPDATE fleet_meta SET value = '4:{log[3]['hash']}' WHERE key = 'audit_head'")
        out = self.cli("audit", "verify", "--state", state)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("entries were removed", out.stdout)


class SqliteFleetTest(FleetTests, unittest.TestCase):
    def new_db(self):
        tmp = tempfile.mkdtemp(prefix="outpost-fleet-db-")
        self.addCleanup(shutil.rmtree, tmp, True)
        self.db_path = os.path.join(tmp, "fleet.db")
        return "sqlite:" + self.db_path

    def tamper(self, sql):
        try:
            with sqlite3.connect(self.db_path) as c:
                c.execute(sql)
            return ""
        except sqlite3.Error as e:
            return str(e)

    def database_text(self):
        """Every byte the database keeps (file and WAL), freed pages included."""
        data = b""
        for suffix in ("", "-wal"):
            if os.path.exists(self.db_path + suffix):
                with open(self.db_path + suffix, "rb") as f:
                    data += f.read()
        return data.decode("latin-1")


class PostgresFleetTest(PostgresCluster, FleetTests, unittest.TestCase):
    def new_db(self):
        return self.pg.new_database()

    def tamper(self, sql):
        code, out = self.pg.psql(sql)
        return out if code != 0 or "ERROR" in out else ""

    def database_text(self):
        """Every row of every table, as text."""
        code, tables = self.pg.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        self.assertEqual(code, 0, tables)
        text = ""
        for table in tables.split():
            code, rows = self.pg.psql(f"SELECT t::text FROM {table} t")
            self.assertEqual(code, 0, rows)
            text += rows
        return text


if __name__ == "__main__":
    unittest.main()
