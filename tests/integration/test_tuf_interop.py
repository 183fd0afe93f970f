"""Outpost's TUF implementation against the reference one (python-tuf and securesystemslib, the
versions the conformance suite is held to): canonical JSON byte for byte over the TUF fuzz
corpus, and a repository written by python-tuf (ecdsa keys, a delegated role for one team's
models, consistent snapshots) serving a model to a running outpostd."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np
from datetime import datetime, timedelta, timezone

import tuf_vendor
from agent import BIN_DIR, Agent, copy_fixtures

OUTPOST = os.path.join(BIN_DIR, "outpost")
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../fuzz/corpus/tuf")


def has_big_int(v):
    """Integers past 64 bits: Python keeps them exact, Outpost (as C++) reads them as floats and
    refuses them. No TUF field (versions, lengths, thresholds) comes near."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return not -(1 << 63) <= v < (1 << 64)
    if isinstance(v, dict):
        return any(has_big_int(x) for x in v.values())
    if isinstance(v, list):
        return any(has_big_int(x) for x in v)
    return False


def depth(v):
    if isinstance(v, dict):
        return 1 + max((depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((depth(x) for x in v), default=0)
    return 0


class CanonicalJsonTest(unittest.TestCase):
    def test_matches_securesystemslib_over_the_corpus(self):
        tuf_vendor.load()
        from securesystemslib.formats import encode_canonical
        from securesystemslib.exceptions import FormatError

        tmp = tempfile.mkdtemp(prefix="outpost-canonical-")
        self.addCleanup(shutil.rmtree, tmp, True)
        docs = os.path.join(tmp, "in")
        os.makedirs(docs)
        expected, refused = {}, set()
        for name in sorted(os.listdir(CORPUS)):
            with open(os.path.join(CORPUS, name), "rb") as f:
                data = f.read()[1:]  # the first byte picks the fuzz mode
            try:
                doc = json.loads(data.decode("utf-8"))  # bytes would let Python guess UTF-16
            except (ValueError, RecursionError):
                continue  # not JSON to either side
            if depth(doc) > 60 or len(data) > (1 << 20) or has_big_int(doc):
                continue  # past what Outpost reads as metadata at all
            try:
                expected[name] = encode_canonical(doc).encode("utf-8")
            except (FormatError, UnicodeEncodeError):
                refused.add(name)  # floats, lone surrogates
            with open(os.path.join(docs, name), "wb") as f:
                f.write(data)
        names = sorted(expected) + sorted(refused)
        out = os.path.join(tmp, "out")
        for i in range(0, len(names), 200):
            subprocess.run([OUTPOST, "repo", "canonical", "--out-dir", out,
                            *[os.path.join(docs, n) for n in names[i:i + 200]]],
                           capture_output=True)
        self.assertGreater(len(expected), 300, "too little of the corpus is JSON to compare")
        for name, want in expected.items():
            path = os.path.join(out, name)
            self.assertTrue(os.path.exists(path), f"{name}: refused by Outpost, encoded by securesystemslib")
            with open(path, "rb") as f:
                self.assertEqual(f.read(), want, name)
        for name in refused:
            self.assertFalse(os.path.exists(os.path.join(out, name)),
                             f"{name}: encoded by Outpost, refused by securesystemslib")
        print(f"\n  canonical JSON: {len(expected)} documents identical, {len(refused)} refused by both")


def python_tuf_repository(path, packages, team_paths):
    """A TUF repository made with python-tuf's Metadata API alone: every role's key ecdsa
    (P-256), and the top-level targets delegating `team_paths` to a role "vision-team" with its
    own key, which lists `packages` ({target path: (file, custom)}). Returns root v1's path."""
    tuf_vendor.load()
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import (DelegatedRole, Delegations, Metadata, MetaFile, Root, Snapshot,
                                  TargetFile, Targets, Timestamp)
    from tuf.api.serialization.json import JSONSerializer

    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=7)
    signers = {r: CryptoSigner.generate_ecdsa() for r in ("root", "targets", "snapshot", "timestamp",
                                                           "vision-team")}
    root = Metadata(Root(expires=expires, consistent_snapshot=True))
    for role in ("root", "targets", "snapshot", "timestamp"):
        root.signed.add_key(signers[role].public_key, role)
    team = Metadata(Targets(expires=expires))
    os.makedirs(os.path.join(path, "metadata"))
    os.makedirs(os.path.join(path, "targets"))
    for target_path, (file, custom) in packages.items():
        with open(file, "rb") as f:
            data = f.read()
        target = TargetFile.from_data(target_path, data, ["sha256"])
        target.unrecognized_fields["custom"] = custom
        team.signed.targets[target_path] = target
        dirname, _, name = target_path.rpartition("/")
        os.makedirs(os.path.join(path, "targets", dirname), exist_ok=True)
        with open(os.path.join(path, "targets", dirname, f"{target.hashes['sha256']}.{name}"), "wb") as f:
            f.write(data)
    top = Metadata(Targets(expires=expires))
    key = signers["vision-team"].public_key
    top.signed.delegations = Delegations(
        keys={key.keyid: key},
        roles={"vision-team": DelegatedRole("vision-team", [key.keyid], 1, True, paths=team_paths)})
    snapshot = Metadata(Snapshot(expires=expires))
    snapshot.signed.meta = {"targets.json": MetaFile(1), "vision-team.json": MetaFile(1)}
    timestamp = Metadata(Timestamp(expires=expires))
    timestamp.signed.snapshot_meta = MetaFile(1)
    out = {"1.root.json": (root, "root"), "1.targets.json": (top, "targets"),
           "1.vision-team.json": (team, "vision-team"), "1.snapshot.json": (snapshot, "snapshot"),
           "timestamp.json": (timestamp, "timestamp")}
    for name, (md, role) in out.items():
        md.sign(signers[role])
        md.to_file(os.path.join(path, "metadata", name), JSONSerializer(compact=False))
    return os.path.join(path, "metadata", "1.root.json")


class PythonTufRepositoryTest(unittest.TestCase):
    def test_an_agent_installs_a_delegated_teams_model(self):
        from update_repo import RepoServer, UpdateRepo

        tmp = tempfile.mkdtemp(prefix="outpost-python-tuf-")
        self.addCleanup(shutil.rmtree, tmp, True)
        keys = UpdateRepo(tmp)  # model signing keys and trust file (the TUF roles come from python-tuf)
        package = keys.package("2.0.0", 2.0)
        custom = {"name": "scaler", "version": "2.0.0", "kind": "model"}
        outside = keys.package("3.0.0", 3.0)
        # The team's role lists a newer build outside its paths too: a lookup never reaches it
        # there, so it is not offered.
        root = python_tuf_repository(
            os.path.join(tmp, "ptuf"),
            {"models/vision/scaler-2.0.0.opkg": (package, custom),
             "models/other/scaler-3.0.0.opkg": (outside, dict(custom, version="3.0.0"))},
            ["models/vision/*"])
        server = RepoServer(os.path.join(tmp, "ptuf"))
        self.addCleanup(server.close)
        models = os.path.join(tmp, "models")
        os.makedirs(models)
        cfg = os.path.join(tmp, "agent.json")
        with open(cfg, "w") as f:
            json.dump({"update_url": server.url, "update_root": root, "update_check_on_start": False,
                       "update_canary_secs": 0}, f)
        agent = Agent(models, ["--config", cfg, "--trust-file", keys.trust], grpc=False, signed_only=True)
        self.addCleanup(agent.close)
        status, _, body = agent.request("POST", "/v2/updates/check", key="admin")
        self.assertEqual(status, 200, body)
        status, body = agent.infer_json("scaler", {"x": np.array([[1, 2, 3, 4]], np.float32)})
        self.assertEqual(status, 200, body)
        self.assertEqual((body["model_version"], body["outputs"][0]["data"]), ("2.0.0", [2, 4, 6, 8]))
        trusted = sorted(os.listdir(os.path.join(models, ".updates", "metadata")))
        self.assertEqual(trusted, ["root.json", "snapshot.json", "targets.json", "timestamp.json",
                                   "vision-team.json"])
        fetched = [path for path, _, _ in server.log]
        with open(os.path.join(tmp, "ptuf", "metadata", "1.vision-team.json")) as f:
            team = json.load(f)["signed"]["targets"]
        sha = team["models/vision/scaler-2.0.0.opkg"]["hashes"]["sha256"]
        self.assertIn(f"/targets/models/vision/{sha}.scaler-2.0.0.opkg", fetched)
        self.assertFalse(any("scaler-3.0.0" in p for p in fetched), fetched)


class OutpostRepositoryTest(unittest.TestCase):
    def test_python_tuf_reads_a_repository_made_by_outpost(self):
        """`outpost repo` with ECDSA and Ed25519 keys and a delegated team, read by python-tuf's
        reference client (ngclient) unchanged."""
        from update_repo import RepoServer, UpdateRepo, must, outpost

        tmp = tempfile.mkdtemp(prefix="outpost-repo-interop-")
        self.addCleanup(shutil.rmtree, tmp, True)
        packages = UpdateRepo(os.path.join(tmp, "packages"))  # only its signed model packages
        vision, top = packages.package("2.0.0", 2.0), packages.package("1.0.0", 1.0)
        keys = os.path.join(tmp, "keys")
        for name, kind in (("root", "ecdsa"), ("targets", "ed25519"), ("snapshot", "ecdsa"),
                           ("timestamp", "ed25519"), ("team", "ecdsa")):
            must("key", "generate", name, "--type", kind, "--dir", keys)
        key = lambda name, ext="key": os.path.join(keys, f"{name}.{ext}")  # noqa: E731
        repo = os.path.join(tmp, "repo")
        must("repo", "init", repo, "--root-key", key("root"), "--targets-key", key("targets"),
             "--snapshot-key", key("snapshot", "pub"), "--timestamp-key", key("timestamp", "pub"))
        must("repo", "delegate", repo, "vision-team", "--paths", "models/vision/*", "--key",
             key("team", "pub"), "--targets-key", key("targets"))
        must("repo", "add", repo, vision, "--role", "vision-team", "--target-path",
             "models/vision/scaler.opkg", "--targets-key", key("team"))
        # Outside the team's paths: refused before anything is signed.
        r = outpost("repo", "add", repo, vision, "--role", "vision-team", "--target-path",
                    "models/audio/scaler.opkg", "--targets-key", key("team"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("outside the paths delegated to vision-team", r.stderr)
        must("repo", "add", repo, top, "--targets-key", key("targets"))
        must("repo", "publish", repo, "--snapshot-key", key("snapshot"), "--timestamp-key", key("timestamp"))
        with open(os.path.join(repo, "metadata", "1.root.json")) as f:
            root = json.load(f)
        self.assertEqual(sorted(k["keytype"] for k in root["signed"]["keys"].values()),
                         ["ecdsa", "ecdsa", "ed25519", "ed25519"])

        server = RepoServer(repo)
        self.addCleanup(server.close)
        tuf_vendor.load()
        from tuf.ngclient import Updater
        meta, downloads = os.path.join(tmp, "client"), os.path.join(tmp, "downloads")
        os.makedirs(meta)
        os.makedirs(downloads)
        shutil.copy(os.path.join(repo, "metadata", "1.root.json"), os.path.join(meta, "root.json"))
        client = Updater(meta, server.url + "/metadata/", downloads, server.url + "/targets/")
        client.refresh()
        for path, package in (("models/vision/scaler.opkg", vision), ("scaler-1.0.0.opkg", top)):
            info = client.get_targetinfo(path)
            self.assertIsNotNone(info, path)
            with open(client.download_target(info), "rb") as got, open(package, "rb") as want:
                self.assertEqual(got.read(), want.read(), path)
        self.assertIsNone(client.get_targetinfo("models/vision/missing.opkg"))
        self.assertEqual(sorted(os.listdir(meta)), ["root.json", "snapshot.json", "targets.json",
                                                    "timestamp.json", "vision-team.json"])


if __name__ == "__main__":
    unittest.main()
