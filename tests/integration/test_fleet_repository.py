"""The fleet server keeps the update repository: release keys sign targets offline (the server
never holds them), the server checks them and signs only snapshot and timestamp with its online
key; a real agent installs from it what the fleet deploys. Tampered, replayed or wrongly signed
publications are refused."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import numpy as np

from agent import BIN_DIR, Agent
from fleet import FleetServer, make_token
from update_repo import UpdateRepo, must

X = np.array([[1, 2, 3, 4]], np.float32)


class FleetRepositoryTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="outpost-fleet-repo-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.keys = UpdateRepo(self.tmp)  # keys, trust file and signed packages
        must("key", "generate", "online", "--dir", self.tmp)
        self.offline = os.path.join(self.tmp, "release-repo")
        k = self.keys.keys
        online_pub = os.path.join(self.tmp, "online.pub")
        must("repo", "init", self.offline, "--root-key", k["root"], "--targets-key", k["targets"],
             "--snapshot-key", online_pub, "--timestamp-key", online_pub)
        self.v1 = self.keys.package("1.0.0", 1.0)
        self.v2 = self.keys.package("2.0.0", 2.0)
        must("repo", "add", self.offline, self.v1, "--targets-key", k["targets"])
        self.models = os.path.join(self.tmp, "models")
        must("install", self.v1, "--repository", self.models, "--trust", self.keys.trust)
        self.db = "sqlite:" + os.path.join(self.tmp, "fleet.db")
        self.token = make_token(self.db)
        self.served_dir = os.path.join(self.tmp, "served")
        self.fleet = FleetServer(self.db, ["--repository-dir", self.served_dir, "--online-key",
                                           os.path.join(self.tmp, "online.key"), "--poll-secs", "1"])
        self.addCleanup(self.fleet.close)
        self.agent = None
        self.addCleanup(lambda: self.agent and self.agent.close())

    def publish(self):
        env = {**os.environ, "OUTPOST_FLEET_URL": f"http://127.0.0.1:{self.fleet.port}",
               "OUTPOST_FLEET_TOKEN": self.token}
        return subprocess.run([os.path.join(BIN_DIR, "outpost"), "fleet", "publish", self.offline],
                              env=env, capture_output=True, text=True, timeout=120)

    def op(self, method, path, body=None):
        return self.fleet.op(self.token, method, path, body)

    def raw(self, path, data):
        status, body, _ = self.fleet.request("POST", path, data, {"Authorization": "Bearer " + self.token})
        return status, body

    def test_offline_signed_release_reaches_an_agent_through_the_fleet(self):
        out = self.publish()
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("root v1 accepted", out.stdout)
        self.assertIn("published targets v2", out.stdout)
        must("repo", "add", self.offline, self.v2, "--targets-key", self.keys.keys["targets"])
        out = self.publish()
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertNotIn("root v1", out.stdout)  # nothing to resend
        self.assertIn("uploaded scaler-2.0.0.opkg", out.stdout)
        # The server signs snapshot and timestamp only, with its online key; targets are as
        # the release key signed them.
        status, ts, _ = self.fleet.request("GET", "/repo/metadata/timestamp.json")
        self.assertEqual(status, 200)
        with open(os.path.join(self.offline, "metadata", "1.root.json")) as f:
            online_id = json.load(f)["signed"]["roles"]["timestamp"]["keyids"][0]
        self.assertEqual([s["keyid"] for s in ts["signatures"]], [online_id])
        status, targets, _ = self.fleet.request("GET", "/repo/metadata/3.targets.json")
        with open(os.path.join(self.offline, "metadata", "3.targets.json")) as f:
            self.assertEqual(targets, json.load(f))
        self.assertFalse([n for n in os.listdir(self.served_dir) if n.endswith(".key")])

        # A device follows the fleet and fetches from the fleet's repository.
        status, body = self.op("POST", "/api/v1/enrollment-tokens", {"tags": {"site": "lab"}})
        cfg = {"update_url": f"http://127.0.0.1:{self.fleet.port}/repo",
               "update_root": os.path.join(self.offline, "metadata", "1.root.json"),
               "update_check_on_start": False, "update_canary_secs": 0.3,
               "fleet_url": f"http://127.0.0.1:{self.fleet.port}", "fleet_enrollment_token": body["token"]}
        path = os.path.join(self.tmp, "agent.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        self.agent = Agent(self.models, ["--config", path, "--trust-file", self.keys.trust],
                           grpc=False, signed_only=True)
        self.assertEqual(self.op("PUT", "/api/v1/deployments/lab",
                                 {"selector": {"site": "lab"}, "packages": {"scaler": "2.0.0"}})[0], 200)
        deadline = time.time() + 60
        while time.time() < deadline:
            status, body = self.agent.infer_json("scaler", {"x": X})
            if body.get("model_version") == "2.0.0":
                break
            time.sleep(0.2)
        self.assertEqual(body["model_version"], "2.0.0", self.agent.logs()[-2000:])
        self.assertEqual(body["outputs"][0]["data"], [2, 4, 6, 8])
        status, log = self.op("GET", "/api/v1/audit")
        self.assertEqual([e["action"] for e in log if e["action"].startswith("repository.")],
                         ["repository.root", "repository.publish", "repository.publish"])

    def test_refuses_what_the_release_keys_did_not_sign(self):
        self.assertEqual(self.publish().returncode, 0)
        meta = os.path.join(self.offline, "metadata")
        with open(os.path.join(meta, "2.targets.json")) as f:
            published = json.load(f)
        # Replayed: the same (or an older) targets version again.
        status, body = self.raw("/api/v1/repository/targets", json.dumps(published).encode())
        self.assertEqual(status, 409)
        self.assertIn("not newer", body["error"])
        # Signed by a key the root does not name for targets (a copy of the release repository
        # where someone without the release key added a package).
        rogue = os.path.join(self.tmp, "rogue-repo")
        shutil.copytree(self.offline, rogue)
        must("repo", "add", rogue, self.v2, "--targets-key", self.keys.keys["stranger"])
        with open(os.path.join(rogue, "metadata", "3.targets.json"), "rb") as f:
            status, body = self.raw("/api/v1/repository/targets", f.read())
        self.assertEqual(status, 403, body)
        self.assertIn("required signatures", body["error"])
        # A release-signed file altered afterwards: its signatures no longer cover it.
        published["signed"]["version"] = 9
        status, body = self.raw("/api/v1/repository/targets", json.dumps(published).encode())
        self.assertEqual(status, 403, body)
        # A target whose upload differs from what the release key signed.
        must("repo", "add", self.offline, self.v2, "--targets-key", self.keys.keys["targets"])
        with open(os.path.join(meta, "3.targets.json")) as f:
            v3 = json.load(f)
        info = v3["signed"]["targets"]["scaler-2.0.0.opkg"]
        file = info["hashes"]["sha256"] + ".scaler-2.0.0.opkg"
        status, _, _ = self.fleet.request("PUT", f"/api/v1/repository/uploads/{file}?offset=0",
                                          b"x" * info["length"], {"Authorization": "Bearer " + self.token})
        self.assertEqual(status, 200)
        status, body = self.raw("/api/v1/repository/targets", json.dumps(v3).encode())
        self.assertEqual(status, 403)
        self.assertIn("not what the targets metadata signs", body["error"])
        status, _, _ = self.fleet.request("GET", f"/repo/targets/{file}")
        self.assertEqual(status, 404)
        # The real file then goes through.
        out = self.publish()
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        status, _, _ = self.fleet.request("GET", f"/repo/targets/{file}")
        self.assertEqual(status, 200)
        # A root that gives snapshot and timestamp to another key is refused.
        k = self.keys.keys
        other = os.path.join(self.tmp, "other-repo")
        must("repo", "init", other, "--root-key", k["root"], "--targets-key", k["targets"],
             "--snapshot-key", k["snapshot"], "--timestamp-key", k["timestamp"])
        with open(os.path.join(other, "metadata", "1.root.json"), "rb") as f:
            status, body = self.raw("/api/v1/repository/root", f.read())
        self.assertEqual(status, 409)
        self.assertIn("online key", body["error"])

    def test_a_delegated_team_publishes_its_own_models_through_the_fleet(self):
        """The release keys delegate vision-*.opkg to a team's ECDSA key; the team signs its
        role offline; the fleet checks it against the published delegation (keys, threshold,
        paths) and lists it in the snapshot it signs; a TUF client finds the team's model
        there. What the team's key may not sign, or what another key signs, is refused."""
        k = self.keys.keys
        must("key", "generate", "team", "--type", "ecdsa", "--dir", self.tmp)
        team_key, team_pub = os.path.join(self.tmp, "team.key"), os.path.join(self.tmp, "team.pub")
        must("repo", "delegate", self.offline, "vision", "--paths", "vision-*.opkg", "--key", team_pub,
             "--targets-key", k["targets"])
        must("repo", "add", self.offline, self.v2, "--role", "vision", "--target-path",
             "vision-scaler-2.0.0.opkg", "--targets-key", team_key)
        out = self.publish()
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("published vision v1", out.stdout)
        status, ts, _ = self.fleet.request("GET", "/repo/metadata/timestamp.json")
        snapshot_version = ts["signed"]["meta"]["snapshot.json"]["version"]
        status, snap, _ = self.fleet.request("GET", f"/repo/metadata/{snapshot_version}.snapshot.json")
        self.assertEqual({n: m["version"] for n, m in snap["signed"]["meta"].items()},
                         {"targets.json": 3, "vision.json": 1})
        # Our TUF client, through the fleet's repository, finds the model in the team's role.
        meta, downloads = os.path.join(self.tmp, "client"), os.path.join(self.tmp, "downloads")
        tuf = [os.path.join(BIN_DIR, "outpost"), "tuf", "--metadata-dir", meta]
        subprocess.run(tuf + ["init", os.path.join(self.offline, "metadata", "1.root.json")], check=True)
        base = f"http://127.0.0.1:{self.fleet.port}/repo"
        r = subprocess.run(tuf + ["--metadata-url", base + "/metadata", "--target-name", "vision-scaler-2.0.0.opkg",
                                  "--target-base-url", base + "/targets", "--target-dir", downloads, "download"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(downloads, "vision-scaler-2.0.0.opkg"), "rb") as got, open(self.v2, "rb") as want:
            self.assertEqual(got.read(), want.read())

        def role(version, target_path, key):
            """The team's role file, version `version`, listing `target_path`, signed by `key`."""
            team = os.path.join(self.tmp, f"team-{version}-{os.path.basename(key)}")
            shutil.rmtree(team, ignore_errors=True)
            shutil.copytree(self.offline, team)
            # Written by hand (the CLI refuses paths outside the delegation before signing).
            with open(os.path.join(team, "metadata", "1.vision.json")) as f:
                doc = json.load(f)["signed"]
            doc["version"] = version
            entry = doc["targets"].pop("vision-scaler-2.0.0.opkg")
            doc["targets"][target_path] = entry
            canonical = os.path.join(team, "doc.json")
            with open(canonical, "w") as f:
                json.dump(doc, f)
            must("repo", "canonical", canonical, "--out-dir", os.path.join(team, "c"))
            sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key + ".pem",
                                  os.path.join(team, "c", "doc.json")], capture_output=True, check=True).stdout
            with open(key + ".id") as f:
                keyid = f.read()
            return json.dumps({"signed": doc, "signatures": [{"keyid": keyid, "sig": sig.hex()}]}).encode()

        # The team's key as PEM for openssl, and its TUF key id (what the delegation names).
        for name in ("team", "rogue"):
            if name == "rogue":
                must("key", "generate", "rogue", "--type", "ecdsa", "--dir", self.tmp)
            with open(os.path.join(self.tmp, f"{name}.key")) as f:
                kf = json.load(f)
            with open(os.path.join(self.tmp, f"{name}.pem"), "w") as f:
                f.write(kf["secret"])
            with open(os.path.join(self.tmp, f"{name}.id"), "w") as f:
                f.write(kf["keyid"])
        team_base, rogue_base = os.path.join(self.tmp, "team"), os.path.join(self.tmp, "rogue")
        # Outside the delegated paths, though signed by the team's key.
        status, body = self.raw("/api/v1/repository/roles/vision", role(2, "audio-scaler.opkg", team_base))
        self.assertEqual(status, 403, body)
        self.assertIn("outside the paths delegated", body["error"])
        # Inside them, signed by a key the delegation does not name.
        status, body = self.raw("/api/v1/repository/roles/vision", role(2, "vision-x.opkg", rogue_base))
        self.assertEqual(status, 403, body)
        self.assertIn("0 of 1 required signatures from the vision role", body["error"])
        # The published version again: not newer.
        with open(os.path.join(self.offline, "metadata", "1.vision.json"), "rb") as f:
            status, body = self.raw("/api/v1/repository/roles/vision", f.read())
        self.assertEqual(status, 409, body)
        # A role nobody delegated.
        with open(os.path.join(self.offline, "metadata", "1.vision.json"), "rb") as f:
            status, body = self.raw("/api/v1/repository/roles/audio", f.read())
        self.assertEqual(status, 403, body)
        status, log = self.op("GET", "/api/v1/audit")
        self.assertEqual([e["action"] for e in log if e["action"] == "repository.publish_role"],
                         ["repository.publish_role"])


if __name__ == "__main__":
    unittest.main()
