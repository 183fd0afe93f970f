"""Staged rollouts to 1,000 simulated devices through two PostgreSQL-backed replicas behind a
round-robin balancer, one of which is killed and restarted mid-rollout: a rollout where 5 % of
devices fail their health checks halts in its first wave and rolls back; one without failures
completes; in both, every step is taken exactly once (steps contiguous, one audit entry each)."""
import concurrent.futures
import random
import threading
import time
import unittest

from fleet import Balancer, Device, FleetServer, PostgresCluster, make_token, rollout_key

DEVICES = 1000
POLICY = {"waves": [1, 10, 50, 100], "soak_secs": 1, "max_failure_rate": 0.02,
          "min_success_rate": 0.97}


class RolloutAtScaleTest(PostgresCluster, unittest.TestCase):
    def setUp(self):
        self.db_url = self.pg.new_database()
        self.admin = make_token(self.db_url)
        self.replicas = [FleetServer(self.db_url, ["--replica", "a"]),
                         FleetServer(self.db_url, ["--replica", "b"])]
        self.addCleanup(lambda: [r.close() for r in self.replicas])
        self.balancer = Balancer(self.replicas)
        self.rng = random.Random(7)
        self.pool = concurrent.futures.ThreadPoolExecutor(8)
        self.addCleanup(self.pool.shutdown)
        status, body = self.replicas[0].op(self.admin, "POST", "/api/v1/enrollment-tokens",
                                           {"tags": {"fleet": "sim"}, "uses": DEVICES})
        self.assertEqual(status, 201)
        self.devices = [Device(self.balancer) for _ in range(DEVICES)]
        for status, _ in self.pool.map(lambda d: d.enroll(body["token"]), self.devices):
            self.assertEqual(status, 201)
        for d in self.devices:
            d.installed = {}

    def op(self, method, path, body=None):
        status, body, _ = self.balancer.request(method, path, body, {"Authorization": "Bearer " + self.admin})
        return status, body

    def restart(self, i):
        name = "a" if i == 0 else "b"
        port = self.replicas[i].port
        self.replicas[i].kill()
        self.replicas[i].close()
        time.sleep(0.5)
        self.replicas[i] = FleetServer(self.db_url, ["--replica", name + "2"], port=port)

    def step_device(self, d, failing):
        """One poll: fetch the desired state (ETag), 'install' what changed, report on change."""
        status, state = d.desired()
        self.assertIn(status, (200, 304), state)
        if status == 304:
            return
        report = {}
        for name, rev in state["deployments"].items():
            ok = not (d.id in failing and rev > 1)
            report[name] = {"revision": rev, "status": "installed" if ok else "failed",
                            "reason": "" if ok else "health probe failed after install"}
        status, body = d.report(report, healthy=True)
        self.assertEqual(status, 200, body)

    def drive(self, failing, done, kill_when, timeout=240):
        """Rounds of polls until done(); once kill_when() holds, replica a is SIGKILLed at a
        random moment inside the next round (while devices and both controllers are busy) and
        started again."""
        killer = None
        deadline = time.time() + timeout
        while time.time() < deadline:
            if killer is None and kill_when():
                killer = threading.Thread(target=lambda: (time.sleep(self.rng.uniform(0, 0.5)),
                                                          self.restart(0)))
                killer.start()
            list(self.pool.map(lambda d: self.step_device(d, failing), self.devices))
            if killer is not None:
                killer.join()
            if done():
                return killer is not None
            time.sleep(0.2)
        self.fail("the rollout did not finish in time")

    def rollout(self, rid):
        status, body = self.op("GET", f"/api/v1/rollouts/{rid}")
        self.assertEqual(status, 200, body)
        return body

    def check_steps_once(self, rid, expected_actions):
        r = self.rollout(rid)
        self.assertEqual([s["action"] for s in r["steps"]], expected_actions)
        self.assertEqual([s["step"] for s in r["steps"]], list(range(1, len(expected_actions) + 1)))
        status, log = self.op("GET", "/api/v1/audit?limit=10000")
        mine = [e for e in log if e["action"].startswith("rollout.") and e["detail"].get("rollout") == rid]
        self.assertEqual(len(mine), len(expected_actions))
        status, verdict = self.op("GET", "/api/v1/audit/verify")
        self.assertTrue(verdict["ok"], verdict)
        return r

    def start(self):
        status, body = self.op("PUT", "/api/v1/deployments/app", {"packages": {"dense64": "1.0.0"}})
        self.assertEqual(status, 200, body)
        self.drive(set(), lambda: True, lambda: False)
        status, body = self.op("PUT", "/api/v1/deployments/app",
                               {"packages": {"dense64": "2.0.0"}, "rollout": POLICY})
        self.assertEqual(status, 200, body)
        return body["rollout"]

    def test_five_percent_failing_halts_in_the_first_wave_and_rolls_back(self):
        # Every 20th device in rollout order fails: 5 % of each wave, not 5 % somewhere.
        order = sorted(self.devices, key=lambda d: rollout_key("app", d.id))
        failing = {d.id for i, d in enumerate(order) if i % 20 == 0}
        self.assertEqual(len(failing), DEVICES // 20)
        rid = self.start()
        killed = self.drive(failing, lambda: self.rollout(rid)["state"] != "running",
                            kill_when=lambda: True)
        self.assertTrue(killed)
        r = self.check_steps_once(rid, ["start", "halt"])
        self.assertEqual(r["state"], "rolled_back")
        self.assertEqual(r["wave"], 0)
        self.assertIn("wave 1", r["reason"])
        # Everyone is told revision 1 again, and the devices that failed got it back.
        for d in self.devices:
            d.etag = None
        states = list(self.pool.map(lambda d: d.desired()[1]["deployments"], self.devices))
        self.assertTrue(all(s == {"app": 1} for s in states))

    def test_rollout_without_failures_completes_through_a_replica_restart(self):
        rid = self.start()
        killed = self.drive(set(), lambda: self.rollout(rid)["state"] == "completed",
                            kill_when=lambda: self.rollout(rid)["wave"] >= 1)
        self.assertTrue(killed)
        r = self.check_steps_once(rid, ["start", "advance", "advance", "advance", "complete"])
        self.assertEqual(r["state"], "completed")
        for d in self.devices:
            d.etag = None
        states = list(self.pool.map(lambda d: d.desired()[1]["deployments"], self.devices))
        self.assertTrue(all(s == {"app": 2} for s in states))


if __name__ == "__main__":
    unittest.main()
