"""Over-the-air model updates end to end: a TUF repository built with `outpost repo`, served on
loopback, and a real outpostd that polls it, takes new versions through A/B slots (install
beside, warm up, probe, canary) and commits or rolls back."""
import json
import os
import shutil
import signal
import tempfile
import threading
import time
import unittest

import numpy as np

from agent import Agent
from update_repo import FaultProxy, RepoServer, UpdateRepo, must, outpost, tree

X = np.array([[1, 2, 3, 4]], np.float32)


class UpdateTestBase(unittest.TestCase):
    canary_secs = 0.5

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="outpost-updates-")
        self.repo = UpdateRepo(self.tmp)
        self.v1 = self.repo.package("1.0.0", 1.0)
        self.repo.add(self.v1)
        self.models = os.path.join(self.tmp, "models")
        must("install", self.v1, "--repository", self.models, "--trust", self.repo.trust)
        self.server = RepoServer(self.repo.dir)
        self.agent = None

    def tearDown(self):
        if self.agent:
            self.agent.close()
        self.server.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, url=None, env=None, **config):
        cfg = {"update_url": url or self.server.url, "update_root": self.repo.root,
               "update_interval_secs": 3600, "update_check_on_start": False, "update_canary_secs": self.canary_secs,
               "update_slow_window_secs": 2, "update_download_attempts": 4}
        cfg.update(config)
        path = os.path.join(self.tmp, "agent.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        self.agent = Agent(self.models, ["--config", path, "--trust-file", self.repo.trust],
                           grpc=False, signed_only=True, env=env)
        return self.agent

    def check(self, force=False):
        """POST /v2/updates/check through the CLI; returns (exit code, status)."""
        args = ["update", "check", "--url", f"http://127.0.0.1:{self.agent.http_port}", "--json"]
        r = outpost(*args, *(["--force"] if force else []), env=self.agent.cli_env())
        status = json.loads(r.stdout) if r.stdout.strip() else None
        return r.returncode, status

    def served(self, version=None):
        status, body = self.agent.infer_json("scaler", {"x": X}, version=version)
        self.assertEqual(status, 200, body)
        return body["model_version"], body["outputs"][0]["data"]

    def slots(self):
        with open(os.path.join(self.models, "scaler", ".slots.json")) as f:
            return json.load(f)

    def disk(self):
        """The model's slots and the trusted metadata: what an update may change."""
        return (tree(os.path.join(self.models, "scaler")), tree(os.path.join(self.models, ".updates", "metadata")))

    def versions_on_disk(self):
        return sorted(n for n in os.listdir(os.path.join(self.models, "scaler")) if not n.startswith("."))


class UpdateFlowTest(UpdateTestBase):
    def test_update_commits_new_version_and_keeps_previous(self):
        self.start()
        self.assertEqual(self.served(), ("1.0.0", [1, 2, 3, 4]))
        self.repo.add(self.repo.package("2.0.0", 2.0))
        rc, status = self.check()
        self.assertEqual(rc, 0, status)
        self.assertEqual(status["last_result"], "ok")
        self.assertEqual(self.served(), ("2.0.0", [2, 4, 6, 8]))
        self.assertEqual(self.slots()["committed"], "2.0.0")
        self.assertEqual(self.slots()["previous"], "1.0.0")
        self.assertEqual(self.versions_on_disk(), ["1.0.0", "2.0.0"])
        event = status["events"][-1]
        self.assertEqual((event["version"], event["outcome"], event["delta"]), ("2.0.0", "committed", False))
        # A third version replaces the oldest slot: two versions on disk, never more.
        self.repo.add(self.repo.package("3.0.0", 3.0))
        self.assertEqual(self.check()[0], 0)
        self.assertEqual(self.served(), ("3.0.0", [3, 6, 9, 12]))
        self.assertEqual(self.versions_on_disk(), ["2.0.0", "3.0.0"])
        # Nothing newer: a check changes nothing.
        before = self.disk()
        self.assertEqual(self.check()[0], 0)
        self.assertEqual(self.disk(), before)
        metrics = self.agent.request("GET", "/metrics")[2].decode()
        self.assertIn('outpost_update_commits_total{model="scaler"} 2', metrics)

    def test_delta_downloads_only_the_change(self):
        self.start()
        v2 = self.repo.package("2.0.0", 2.0)
        out = self.repo.add(v2, delta_from=self.v1).stdout
        delta = next(p for n, p in self.repo.target_files().items() if n.endswith(".opkg.zst"))
        full = os.path.getsize(v2)
        self.assertLess(os.path.getsize(delta), full / 20, out)
        rc, status = self.check()
        self.assertEqual(rc, 0, status)
        event = status["events"][-1]
        self.assertTrue(event["delta"], event)
        self.assertLessEqual(event["bytes_downloaded"], os.path.getsize(delta) * 1.2)
        self.assertEqual(self.served(), ("2.0.0", [2, 4, 6, 8]))
        sent = sum(n for path, _, n in self.server.log if path.endswith(".opkg"))
        self.assertEqual(sent, 0, "the full package was never fetched")

    def test_delta_against_a_missing_base_falls_back_to_the_full_package(self):
        self.start()
        v2 = self.repo.package("2.0.0", 2.0)
        self.repo.add(v2, delta_from=self.v1)
        shutil.rmtree(os.path.join(self.models, "scaler", "1.0.0", ".package"))  # cannot rebuild v1
        # (the agent keeps serving 1.0.0 from memory; the update must not rely on the record)
        rc, status = self.check()
        self.assertEqual(rc, 0, status)
        self.assertFalse(status["events"][-1]["delta"])
        self.assertEqual(self.served(), ("2.0.0", [2, 4, 6, 8]))

    def test_failed_probe_rolls_back(self):
        probe = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
        self.start(update_probes={"scaler": probe})
        self.repo.add(self.repo.package("2.0.0", 2.0, mode="renamed"))
        before = self.versions_on_disk()
        rc, status = self.check()
        self.assertEqual(rc, 0, status)  # the check worked; the update did not
        event = status["events"][-1]
        self.assertEqual(event["outcome"], "rolled_back")
        self.assertIn("probe failed", event["reason"])
        self.assertEqual(self.served(), ("1.0.0", [1, 2, 3, 4]))
        self.assertEqual(self.versions_on_disk(), before)
        self.assertEqual(self.slots()["failed"], ["2.0.0"])
        self.assertIn("probe failed", status["models"]["scaler"]["last_failure"])

    def test_error_rate_in_canary_rolls_back_then_next_update_works(self):
        type(self).canary_secs = 2.0
        try:
            self.start(update_canary_fraction=0.5)
        finally:
            type(self).canary_secs = 0.5
        # Passes warm-up and the default probe (batch 1), fails on the batch of 2 users send.
        self.repo.add(self.repo.package("2.0.0", 2.0, mode="fixed_batch"))
        stop, results = threading.Event(), []

        def traffic():
            batch = np.concatenate([X, X])
            while not stop.is_set():
                results.append(self.agent.infer_json("scaler", {"x": batch}))
                time.sleep(0.01)

        t = threading.Thread(target=traffic)
        t.start()
        try:
            # Traffic flows before the update starts: on a loaded machine a thread that has not
            # yet sent its first request when the canary window opens leaves the window empty.
            deadline = time.time() + 30
            while len(results) < 3 and time.time() < deadline:
                time.sleep(0.01)
            rc, status = self.check()
        finally:
            stop.set()
            t.join()
        self.assertEqual(rc, 0, status)
        event = status["events"][-1]
        self.assertEqual(event["outcome"], "rolled_back", event)
        self.assertIn("error rate rose in the canary window", event["reason"])
        failures = [b for s, b in results if s != 200]
        self.assertTrue(failures, "some canary requests reached 2.0.0 and failed")
        # Each failure is 2.0.0's own: its fixed batch of 1 (a Reshape to {1,4} that 1.0.0 lacks)
        # meeting the batch of 2; an error body names no version, so the error says whose it is.
        for body in failures:
            self.assertIn("requested shape:{1,4}", body.get("error", ""), body)
        self.assertEqual(self.served(), ("1.0.0", [1, 2, 3, 4]))
        self.assertEqual(self.versions_on_disk(), ["1.0.0"])
        # The failed version is not tried again; a newer one is.
        before = self.disk()
        self.assertEqual(self.check()[0], 0)
        self.assertEqual(self.disk(), before)
        self.repo.add(self.repo.package("3.0.0", 3.0))
        self.assertEqual(self.check()[0], 0)
        self.assertEqual(self.served(), ("3.0.0", [3, 6, 9, 12]))

    def test_package_for_a_newer_agent_waits(self):
        self.start()
        src = os.path.join(self.tmp, "src-scaler-2.0.0-ok")
        self.repo.package("2.0.0", 2.0)
        with open(os.path.join(src, "manifest.json")) as f:
            m = json.load(f)
        m["min_agent_version"] = "99.0.0"
        with open(os.path.join(src, "manifest.json"), "w") as f:
            json.dump(m, f)
        pkg = os.path.join(self.tmp, "future.opkg")
        must("pack", src, "-o", pkg)
        must("sign", pkg, "--key", self.repo.keys["signer"])
        self.repo.add(pkg)
        rc, status = self.check()
        self.assertEqual(rc, 0, status)
        self.assertEqual(status["events"][-1]["outcome"], "deferred")
        self.assertIn("needs outpost 99.0.0", status["events"][-1]["reason"])
        self.assertEqual(self.served(), ("1.0.0", [1, 2, 3, 4]))
        self.assertNotIn("2.0.0", self.slots().get("failed", []) if os.path.exists(
            os.path.join(self.models, "scaler", ".slots.json")) else [])


class PolicyTest(UpdateTestBase):
    def test_metered_network_pauses_until_forced(self):
        self.start(update_metered_interfaces=["lo"])
        self.repo.add(self.repo.package("2.0.0", 2.0))
        rc, status = self.check()
        self.assertEqual(rc, 1)
        self.assertEqual(status["last_result"], "blocked")
        self.assertIn("metered interface lo", status["last_error"])
        self.assertEqual(self.server.log, [], "nothing was fetched")
        rc, status = self.check(force=True)
        self.assertEqual(rc, 0, status)
        self.assertEqual(self.served()[0], "2.0.0")

    def test_outside_maintenance_window_nothing_happens(self):
        now = time.localtime()
        start = (now.tm_hour + 2) % 24
        self.start(update_windows=[f"{start:02d}:00-{(start + 1) % 24:02d}:00"])
        self.repo.add(self.repo.package("2.0.0", 2.0))
        rc, status = self.check()
        self.assertEqual(rc, 1)
        self.assertIn("outside the maintenance windows", status["last_error"])
        self.assertEqual(self.server.log, [])
        self.assertEqual(self.served()[0], "1.0.0")

    def test_pinned_model_is_left_alone(self):
        self.start(update_pinned_models=["scaler"])
        self.repo.add(self.repo.package("2.0.0", 2.0))
        rc, status = self.check()
        self.assertEqual(rc, 0, status)
        self.assertEqual(self.served()[0], "1.0.0")
        self.assertFalse(any(p.endswith(".opkg") for p, _, _ in self.server.log))

    def test_bandwidth_cap_slows_the_download(self):
        cap = 128 * 1024
        self.start(update_max_bytes_per_second=cap)
        v2 = self.repo.package("2.0.0", 2.0, ballast_bytes=512 * 1024)
        self.repo.add(v2)
        started = time.monotonic()
        rc, status = self.check()
        took = time.monotonic() - started
        self.assertEqual(rc, 0, status)
        # A lower bound only: a slow machine makes it longer, never shorter.
        self.assertGreaterEqual(took, 0.8 * os.path.getsize(v2) / cap - 0.5)


class AttackTest(UpdateTestBase):
    """One test per TUF threat: each refused with its own error, the device still serving the
    committed version, and nothing the attack sent on disk."""

    def setUp(self):
        super().setUp()
        self.start()
        self.assertEqual(self.check()[0], 0)  # trust the current metadata first

    ROLES = ("root.json", "timestamp.json", "snapshot.json", "targets.json")

    def assertRefused(self, fragment, unchanged=ROLES):
        """`unchanged`: the trusted roles the attack must not alter (those fetched before the
        refused one were valid, and are kept)."""
        before = self.disk()
        rc, status = self.check()
        self.assertEqual(rc, 1, status)
        self.assertEqual(status["last_result"], "error")
        self.assertIn(fragment, status["last_error"])
        self.assertEqual(self.served(), ("1.0.0", [1, 2, 3, 4]))
        after = self.disk()
        self.assertEqual(after[0], before[0], "the model's slots did not change")
        for role in unchanged:
            self.assertEqual(after[1].get(role), before[1].get(role), f"{role}: no refused metadata was stored")
        return status

    def test_arbitrary_package_altered_on_the_server(self):
        self.repo.add(self.repo.package("2.0.0", 2.0))
        name, path = next((n, p) for n, p in self.repo.target_files().items() if "2.0.0" in n)
        with open(path, "r+b") as f:
            f.seek(3000)
            b = f.read(1)
            f.seek(3000)
            f.write(bytes([b[0] ^ 1]))
        self.assertRefused("sha256 differs from the one signed for it", unchanged=())

    def test_arbitrary_package_signed_by_an_untrusted_key(self):
        self.repo.add(self.repo.package("2.0.0", 2.0, signer="stranger"))
        status = self.assertRefused("valid signature(s) from trusted keys, has 0", unchanged=())
        self.assertEqual(status["events"][-1]["outcome"], "refused")

    def test_rollback_to_an_older_timestamp(self):
        with open(os.path.join(self.repo.dir, "metadata", "timestamp.json")) as f:
            old = f.read()
        self.repo.publish()
        self.assertEqual(self.check()[0], 0)
        with open(os.path.join(self.repo.dir, "metadata", "timestamp.json"), "w") as f:
            f.write(old)  # a mirror replaying yesterday's validly signed timestamp
        self.assertRefused("(rollback)")

    def test_indefinite_freeze(self):
        self.repo.publish("--expires-days", "0")  # what a frozen mirror serves once it expires
        self.assertRefused("(freeze)")

    def test_mix_and_match(self):
        self.repo.add(self.repo.package("2.0.0", 2.0))
        meta = os.path.join(self.repo.dir, "metadata")
        latest = max((n for n in os.listdir(meta) if n.endswith(".targets.json")), key=lambda n: int(n.split(".")[0]))
        shutil.copy(os.path.join(meta, "1.targets.json"), os.path.join(meta, latest))  # old targets, new name
        self.assertRefused("(mix-and-match?)", unchanged=("root.json", "targets.json"))

    def test_endless_data(self):
        self.server.faults["timestamp.json"] = "endless"
        self.assertRefused("(endless data)")

    def test_slow_retrieval(self):
        self.agent.close()
        self.start(update_min_bytes_per_second=4096, update_slow_window_secs=1, update_download_attempts=2)
        self.repo.add(self.repo.package("2.0.0", 2.0))
        self.server.faults[".opkg"] = ("trickle", 500)
        self.assertRefused("(slow retrieval)", unchanged=())

    def test_compromised_timestamp_key_after_rotation(self):
        must("key", "generate", "timestamp2", "--dir", self.tmp)
        new_key = os.path.join(self.tmp, "timestamp2.key")
        must("repo", "rotate", self.repo.dir, "--root-key", self.repo.keys["root"], "--timestamp-key", new_key)
        self.repo.publish(timestamp_key=new_key)
        rc, status = self.check()
        self.assertEqual(rc, 0, status)  # root v2 accepted through the chain, new key in use
        self.assertTrue(os.path.exists(os.path.join(self.models, ".updates", "metadata", "root.json")))
        # The thief of the old timestamp key publishes a fresher timestamp: refused.
        self.repo.publish(timestamp_key=self.repo.keys["timestamp"])
        self.assertRefused("not a timestamp key")


class PowerLossTest(UpdateTestBase):
    """SIGKILL at every step of an update, then a restart: the agent serves a complete,
    verified version each time, and the next update still works."""

    STEPS = ["refreshed", "downloading", "downloaded", "trial-recorded", "installed", "loaded",
             "probed", "canary", "committed"]

    def test_kill_at_every_step(self):
        pristine = os.path.join(self.tmp, "pristine")
        shutil.copytree(self.models, pristine)
        self.repo.add(self.repo.package("2.0.0", 2.0))
        for step in self.STEPS:
            with self.subTest(step=step):
                shutil.rmtree(self.models)
                shutil.copytree(pristine, self.models)
                self.start(env={"OUTPOST_TEST_CRASH_AT": step})
                rc, _ = self.check()
                self.assertEqual(rc, 3, "the agent died during the check")
                self.assertEqual(self.agent.proc.wait(timeout=30), -signal.SIGKILL)
                self.agent.close()
                self.start()
                index = self.agent.get_json("/v2/repository/index")[1]
                ready = [e["version"] for e in index if e["name"] == "scaler" and e["state"] == "READY"]
                version, data = self.served()
                self.assertIn(version, ready)  # loaded means verified against the trust file
                expected = "2.0.0" if step == "committed" else "1.0.0"
                self.assertEqual((version, data), (expected, [1, 2, 3, 4] if expected == "1.0.0" else [2, 4, 6, 8]))
                self.assertFalse([e for e in index if e["name"] == "scaler" and e["state"] != "READY"], index)
                self.assertEqual(self.slots()["trial"], "") if os.path.exists(
                    os.path.join(self.models, "scaler", ".slots.json")) else None
                rc, status = self.check()
                self.assertEqual(rc, 0, status)
                self.assertEqual(self.served(), ("2.0.0", [2, 4, 6, 8]))
                self.assertEqual(self.slots()["committed"], "2.0.0")
                self.assertEqual(self.slots()["failed"], [])
                self.agent.close()
                self.agent = None


class DegradedNetworkTest(UpdateTestBase):
    def test_update_through_a_lossy_proxy_resumes_instead_of_restarting(self):
        v2 = self.repo.package("2.0.0", 2.0, ballast_bytes=1 << 20)
        self.repo.add(v2)
        size = os.path.getsize(v2)
        # 5 ms per 16 KiB chunk, and the first three long responses cut after 200 KiB (two
        # closed, one reset): the package arrives in four pieces.
        proxy = FaultProxy(self.server.port, latency=0.005, cut_after=200 * 1024, cuts=3)
        try:
            self.start(url=proxy.url)
            rc, status = self.check()
        finally:
            proxy.close()
        self.assertEqual(rc, 0, status)
        self.assertEqual(self.served(), ("2.0.0", [2, 4, 6, 8]))
        self.assertEqual(proxy.cuts, 3)
        ranges = [r for p, r, _ in self.server.log if p.endswith(".opkg") and r]
        self.assertEqual(len(ranges), 3, self.server.log)
        received = status["events"][-1]["bytes_downloaded"]
        self.assertEqual(received, size, "every byte of the package was fetched exactly once")


if __name__ == "__main__":
    unittest.main()
