"""A real agent under a real fleet server: it enrolls with a one-time token, follows the
desired state through its OTA machinery (a TUF repository of signed packages) forwards and
back, reports failures with their reason, keeps its identity across restarts, and catches up
after the fleet server was away."""
import json
import os
import shutil
import sqlite3
import tempfile
import time
import unittest

import numpy as np

from agent import Agent
from fleet import FleetServer, make_token
from update_repo import RepoServer, UpdateRepo, must

X = np.array([[1, 2, 3, 4]], np.float32)
PROBE = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


class FleetAgentTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="outpost-fleet-agent-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.repo = UpdateRepo(self.tmp)
        v1 = self.repo.package("1.0.0", 1.0)
        self.repo.add(v1)
        self.repo.add(self.repo.package("2.0.0", 2.0))
        self.repo.add(self.repo.package("3.0.0", 3.0, mode="renamed"))  # fails its probe
        self.models = os.path.join(self.tmp, "models")
        must("install", v1, "--repository", self.models, "--trust", self.repo.trust)
        self.repo_server = RepoServer(self.repo.dir)
        self.addCleanup(self.repo_server.close)
        self.db = "sqlite:" + os.path.join(self.tmp, "fleet.db")
        self.token = make_token(self.db)
        # The server says how often devices poll (over the agent's own fleet_poll_secs).
        self.fleet = FleetServer(self.db, ["--poll-secs", "1"])
        self.addCleanup(lambda: self.fleet.close())
        status, body = self.fleet.op(self.token, "POST", "/api/v1/enrollment-tokens",
                                     {"tags": {"site": "lab"}})
        self.assertEqual(status, 201)
        self.enroll_token = body["token"]
        self.agent = None
        self.addCleanup(lambda: self.agent and self.agent.close())

    def start_agent(self, **extra):
        cfg = {**extra,"update_url": self.repo_server.url, "update_root": self.repo.root,
               "update_interval_secs": 3600, "update_check_on_start": False,
               "update_canary_secs": 0.3, "update_probes": {"scaler": PROBE},
               "fleet_url": f"http://127.0.0.1:{self.fleet.port}",
               "fleet_enrollment_token": self.enroll_token, "fleet_poll_secs": 1,
               "telemetry_summary_secs": 0.5}
        path = os.path.join(self.tmp, "agent.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        self.agent = Agent(self.models, ["--config", path, "--trust-file", self.repo.trust],
                           grpc=False, signed_only=True)

    def served(self):
        status, body = self.agent.infer_json("scaler", {"x": X})
        self.assertEqual(status, 200, body)
        return body["model_version"]

    def device(self):
        status, devices = self.fleet.op(self.token, "GET", "/api/v1/devices")
        self.assertEqual(status, 200)
        self.assertLessEqual(len(devices), 1)
        if not devices:
            return None
        return self.fleet.op(self.token, "GET", "/api/v1/devices/" + devices[0]["id"])[1]

    def wait(self, what, predicate, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            d = self.device()
            if d and predicate(d):
                return d
            time.sleep(0.2)
        self.fail(f"timed out waiting for {what}; device: {json.dumps(self.device())}\n"
                  f"agent log:\n{self.agent.logs()[-3000:]}")

    def deploy(self, version):
        status, body = self.fleet.op(self.token, "PUT", "/api/v1/deployments/lab",
                                     {"selector": {"site": "lab"}, "packages": {"scaler": version}})
        self.assertEqual(status, 200, body)
        return body["revision"]

    def test_agent_follows_the_desired_state_forwards_back_and_reports_failures(self):
        self.start_agent()
        d = self.wait("enrollment", lambda d: d["models"].get("scaler") == "1.0.0")
        self.assertEqual(d["tags"], {"site": "lab"})
        self.assertEqual(d["agent_version"], "0.1.0")
        self.assertTrue(d["health"]["ready"])
        self.assertEqual(d["capabilities"]["cpu"]["architecture"], os.uname().machine)
        # The private key stays on the device, readable by its owner only.
        key = os.path.join(self.models, ".fleet", "device.key")
        self.assertEqual(os.stat(key).st_mode & 0o077, 0)
        self.assertNotIn(self.enroll_token, self.agent.logs())

        # Telemetry (here the per-interval summaries) reaches the fleet server signed with the
        # device's key, through the same store-and-forward outbox as to any OTLP collector.
        deadline = time.time() + 30
        batches = []
        while time.time() < deadline and not batches:
            with sqlite3.connect(self.db[len("sqlite:"):]) as c:
                batches = c.execute("SELECT device_id, records FROM telemetry_batches").fetchall()
            time.sleep(0.2)
        self.assertTrue(batches, self.agent.logs()[-2000:])
        self.assertEqual({b[0] for b in batches}, {d["id"]})
        self.assertGreaterEqual(batches[0][1], 1)

        rev = self.deploy("2.0.0")
        self.wait("2.0.0 installed", lambda d: d["deployments"].get("lab", {}).get("status") == "installed"
                  and d["deployments"]["lab"]["revision"] == rev)
        self.assertEqual(self.served(), "2.0.0")
        self.assertEqual(self.device()["models"]["scaler"], "2.0.0")

        # Back to 1.0.0: the fleet's word, through the same A/B install, probe and commit.
        rev = self.deploy("1.0.0")
        self.wait("1.0.0 again", lambda d: d["deployments"].get("lab", {}).get("revision") == rev
                  and d["deployments"]["lab"]["status"] == "installed")
        self.assertEqual(self.served(), "1.0.0")

        # A version whose probe fails: rolled back on the device, reported with the reason.
        rev = self.deploy("3.0.0")
        d = self.wait("3.0.0 failed", lambda d: d["deployments"].get("lab", {}).get("revision") == rev
                      and d["deployments"]["lab"]["status"] == "failed")
        self.assertIn("probe failed", d["deployments"]["lab"]["reason"])
        self.assertEqual(self.served(), "1.0.0")

        # A version the repository does not have.
        rev = self.deploy("9.9.9")
        d = self.wait("9.9.9 failed", lambda d: d["deployments"].get("lab", {}).get("revision") == rev
                      and d["deployments"]["lab"]["status"] == "failed")
        self.assertIn("not in the update repository", d["deployments"]["lab"]["reason"])

    def test_identity_survives_a_restart_and_an_offline_device_catches_up(self):
        self.start_agent()
        first = self.wait("enrollment", lambda d: d["models"].get("scaler") == "1.0.0")["id"]
        self.agent.close()
        # As if the device's clock were set back two minutes across the restart: the server has
        # seen a later request time than the clock now shows. The agent carries on from its
        # record instead of being refused as a replay until the clock catches up.
        ahead = int(time.time() * 1000) + 120_000
        with sqlite3.connect(self.db[len("sqlite:"):]) as c:
            c.execute("UPDATE devices SET last_request_ms = ? WHERE id = ?", (ahead, first))
        with open(os.path.join(self.models, ".fleet", "last_request_ms"), "w") as f:
            f.write(str(ahead))
        # The fleet server goes away; meanwhile the operator deploys 2.0.0 (on a new server
        # process over the same database, started once the agent is back and polling).
        self.fleet.close()
        self.start_agent()  # the one-time token is spent: it must not be needed again
        time.sleep(2)
        self.fleet = FleetServer(self.db, ["--poll-secs", "1"], port=self.fleet.port)
        rev = self.deploy("2.0.0")
        self.wait("catch-up", lambda d: d["deployments"].get("lab", {}).get("revision") == rev
                  and d["deployments"]["lab"]["status"] == "installed")
        self.assertEqual(self.device()["id"], first)
        self.assertEqual(self.served(), "2.0.0")
        status, devices = self.fleet.op(self.token, "GET", "/api/v1/devices")
        self.assertEqual(len(devices), 1)

    def test_a_managed_device_installs_only_what_its_fleet_wants(self):
        self.start_agent()
        device = self.wait("enrollment", lambda d: d["models"].get("scaler") == "1.0.0")["id"]
        with open(self.repo.package("2.0.0", 2.0), "rb") as f:
            package = f.read()
        # An admin key at the device is not enough: the fleet decides what runs here.
        status, _, raw = self.agent.request("POST", "/v2/repository/packages", package,
                                            {"Content-Type": "application/octet-stream"})
        self.assertEqual(status, 403, raw)
        self.assertIn("managed by its fleet", json.loads(raw)["error"])
        status, _, raw = self.agent.request("POST", "/v2/updates/check?force=true")
        self.assertEqual(status, 403, raw)
        self.assertEqual(self.agent.request("POST", "/v2/updates/check")[0], 200)  # the fleet's own plan
        self.assertEqual(self.served(), "1.0.0")
        # Allowed explicitly, a local install happens and the fleet hears of it.
        self.agent.close()
        self.start_agent(fleet_allow_local_install=True)
        status, _, raw = self.agent.request("POST", "/v2/repository/packages", package,
                                            {"Content-Type": "application/octet-stream"})
        self.assertEqual(status, 201, raw)
        deadline = time.time() + 30
        events = []
        while time.time() < deadline and not events:
            status, events = self.fleet.op(self.token, "GET", "/api/v1/events")
            events = [e for e in events if e["event"] == "local_change"]
            time.sleep(0.2)
        self.assertEqual(len(events), 1, self.agent.logs()[-2000:])
        self.assertEqual(events[0]["device_id"], device)
        self.assertIn("package upload", json.dumps(events[0]))


if __name__ == "__main__":
    unittest.main()
