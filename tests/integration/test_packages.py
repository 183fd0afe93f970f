"""Signed model packages through the real outpost CLI: determinism, keys, thresholds, and every
kind of tampering refused with its own message, with nothing written to the repository."""
import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import unittest

from agent import BIN_DIR, FIXTURES

OUTPOST = os.path.join(BIN_DIR, "outpost")


def outpost(*args, env=None):
    return subprocess.run([OUTPOST, *map(str, args)], capture_output=True, text=True, timeout=120, env=env)


def tree(path):
    """Every path under `path`, hidden ones included."""
    out = set()
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(root, n), path))
    return out


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read() if mode == "rb" else json.load(f)


def tar_bytes(members):
    """A hand-made ustar archive: members are (TarInfo, bytes or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


class PackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="outpost-pkg-")
        for name in ("alice", "bob", "carol"):
            r = outpost("key", "generate", name, "--dir", cls.tmp)
            assert r.returncode == 0, r.stderr
        cls.pub = {n: read(os.path.join(cls.tmp, n + ".pub"), "r")["public"] for n in ("alice", "bob", "carol")}
        cls.src = os.path.join(cls.tmp, "src")
        shutil.copytree(os.path.join(FIXTURES, "add_mul", "1"), cls.src)
        cls.write_template(cls.src, "1.0.0")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    @staticmethod
    def write_template(d, version, **extra):
        manifest = {"name": "add_mul", "version": version, "description": "adds and multiplies",
                    "inputs": [{"name": "a", "datatype": "FP32", "shape": [-1, 4]}],
                    "provenance": {"author": "tests", "license": "Apache-2.0", "training_data": "none",
                                   "metrics": {"accuracy": 1.0}, "intended_use": "tests"}}
        manifest.update(extra)
        with open(os.path.join(d, "manifest.json"), "w") as f:
            json.dump(manifest, f)

    def trust(self, threshold=1, keys=("alice", "bob", "carol"), revoked=()):
        path = os.path.join(self.tmp, f"trust-{threshold}-{'-'.join(keys)}-{'-'.join(revoked)}.json")
        keyids = {n: read(os.path.join(self.tmp, n + ".pub"), "r")["keyid"] for n in revoked}
        with open(path, "w") as f:
            json.dump({"threshold": threshold, "keys": [{"public": self.pub[k], "name": k} for k in keys],
                       "revoked": list(keyids.values())}, f)
        return path

    def pack(self, name="p.opkg", signers=("alice",), src=None):
        out = os.path.join(self.tmp, name)
        r = outpost("pack", src or self.src, "-o", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        for s in signers:
            r = outpost("sign", out, "--key", os.path.join(self.tmp, s + ".key"))
            self.assertEqual(r.returncode, 0, r.stderr)
        return out

    def assertRefused(self, package, fragment, trust=None):
        """verify fails with `fragment`, and install writes nothing into a fresh repository."""
        trust = trust or self.trust()
        r = outpost("verify", package, "--trust", trust)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(fragment, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, "one line that says what and where")
        repo = tempfile.mkdtemp(dir=self.tmp)
        r = outpost("install", package, "--repository", repo, "--trust", trust)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(fragment, r.stderr)
        self.assertEqual(tree(repo) - {"add_mul"}, set(), "nothing may be left behind")
        return r.stderr

    # --- the good path ------------------------------------------------------------------
    def test_deterministic_and_verifiable(self):
        a, b = self.pack("a.opkg", signers=()), self.pack("b.opkg", signers=())
        self.assertEqual(read(a), read(b))
        self.assertEqual(stat.S_IMODE(os.stat(a).st_mode), 0o644)
        names = subprocess.run(["tar", "tf", a], capture_output=True, text=True).stdout.split()
        self.assertEqual(names, ["manifest.json", "model.onnx"])
        self.assertRefused(a, "the package is not signed")
        self.pack("a.opkg", signers=("alice",))
        r = outpost("verify", a, "--trust", self.trust(), "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        report = json.loads(r.stdout)
        self.assertTrue(report["verified"])
        self.assertEqual(report["manifest"]["provenance"]["license"], "Apache-2.0")
        self.assertEqual(report["manifest"]["files"][0]["path"], "model.onnx")
        r = outpost("inspect", a)
        self.assertEqual(r.returncode, 0)
        self.assertIn("add_mul 1.0.0", r.stdout)

    def test_keys_are_private(self):
        mode = stat.S_IMODE(os.stat(os.path.join(self.tmp, "alice.key")).st_mode)
        self.assertEqual(mode, 0o600)
        r = outpost("key", "generate", "alice", "--dir", self.tmp)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not overwriting a key", r.stderr)
        secret = read(os.path.join(self.tmp, "alice.key"), "r")["secret"]
        for args in (["key", "generate", "dave", "--dir", self.tmp],
                     ["sign", self.pack("k.opkg", signers=()), "--key", os.path.join(self.tmp, "alice.key")]):
            r = outpost(*args)
            self.assertNotIn(secret, r.stdout + r.stderr)
        loose = os.path.join(self.tmp, "loose.key")
        shutil.copy(os.path.join(self.tmp, "alice.key"), loose)
        os.chmod(loose, 0o644)
        r = outpost("sign", self.pack("l.opkg", signers=()), "--key", loose)
        self.assertEqual(r.returncode, 1)
        self.assertIn("readable by others", r.stderr)

    def test_install_into_repository(self):
        p = self.pack("i.opkg")
        repo = tempfile.mkdtemp(dir=self.tmp)
        r = outpost("install", p, "--repository", repo, "--trust", self.trust())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(tree(repo), {"add_mul", "add_mul/1.0.0", "add_mul/1.0.0/model.onnx", "add_mul/1.0.0/manifest.json",
                                      "add_mul/1.0.0/.package", "add_mul/1.0.0/.package/manifest.json",
                                      "add_mul/1.0.0/.package/signatures.json"})
        served = read(os.path.join(repo, "add_mul", "1.0.0", "manifest.json"), "r")
        self.assertEqual(served["inputs"][0]["name"], "a")
        r = outpost("install", p, "--repository", repo, "--trust", self.trust())
        self.assertEqual(r.returncode, 1)
        self.assertIn("already exists", r.stderr)

    def test_pack_checks_the_model(self):
        d = os.path.join(self.tmp, "wrong")
        shutil.copytree(self.src, d)
        self.write_template(d, "1.0.0", inputs=[{"name": "a", "datatype": "INT8"}])
        r = outpost("pack", d, "-o", os.path.join(self.tmp, "w.opkg"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("input 'a' is INT8 in the manifest but FP32 in the model", r.stderr)
        self.write_template(d, "1.0")
        r = outpost("pack", d, "-o", os.path.join(self.tmp, "w.opkg"))
        self.assertIn("not a semantic version", r.stderr)
        os.symlink("/etc/passwd", os.path.join(d, "link"))
        self.write_template(d, "1.0.0")
        r = outpost("pack", d, "-o", os.path.join(self.tmp, "w.opkg"))
        self.assertIn("'link' is a symlink", r.stderr)

    def test_agent_serves_only_verified_packages(self):
        import numpy as np
        from agent import Agent
        repo = tempfile.mkdtemp(dir=self.tmp)
        trust = self.trust()
        self.assertEqual(outpost("install", self.pack("g1.opkg"), "--repository", repo, "--trust", trust).returncode, 0)
        shutil.copytree(os.path.join(FIXTURES, "add_mul", "1"), os.path.join(repo, "plain", "1"))
        agent = Agent(repo, ["--trust-file", trust, "--repository-poll-secs", "0.1"], signed_only=True)
        try:
            index = {(e["name"], e.get("version")): e for e in agent.get_json("/v2/repository/index")[1]}
            self.assertEqual(index[("add_mul", "1.0.0")]["state"], "READY")
            self.assertEqual(index[("plain", "1")]["state"], "UNAVAILABLE")
            self.assertIn("not a signed package", index[("plain", "1")]["reason"])
            self.assertFalse(agent.get_json("/v2")[1]["unsigned_models_allowed"])
            self.assertIn("outpost_unsigned_models_allowed 0", agent.request("GET", "/metrics")[2].decode())
            # Version 2.0.0 arrives tampered: refused with the file and the check named; 1.0.0 serves on.
            d = os.path.join(self.tmp, "v2agent")
            shutil.copytree(self.src, d)
            self.write_template(d, "2.0.0")
            staging = tempfile.mkdtemp(dir=self.tmp)
            self.assertEqual(outpost("install", self.pack("g2.opkg", src=d), "--repository", staging, "--trust", trust).returncode, 0)
            with open(os.path.join(staging, "add_mul", "2.0.0", "model.onnx"), "ab") as f:
                f.write(b"\0")
            os.rename(os.path.join(staging, "add_mul", "2.0.0"), os.path.join(repo, "add_mul", ".2.0.0"))
            os.rename(os.path.join(repo, "add_mul", ".2.0.0"), os.path.join(repo, "add_mul", "2.0.0"))
            from test_lifecycle import wait_for
            entry = wait_for(lambda: next((e for e in agent.get_json("/v2/repository/index")[1]
                                           if e.get("version") == "2.0.0" and e["state"] == "UNAVAILABLE"), None),
                             what="2.0.0 refused")
            self.assertIn("'model.onnx' is", entry["reason"])
            self.assertIn("the signed manifest says", entry["reason"])
            self.assertIn("not loaded", agent.logs())
            a = np.ones((1, 4), np.float32)
            status, body = agent.infer_json("add_mul", {"a": a, "b": a})
            self.assertEqual((status, body["model_version"]), (200, "1.0.0"))
        finally:
            self.assertEqual(agent.close(), 0)
        dev = Agent(repo, ["--trust-file", trust])
        try:
            self.assertTrue(dev.get_json("/v2")[1]["unsigned_models_allowed"])
            self.assertIn("outpost_unsigned_models_allowed 1", dev.request("GET", "/metrics")[2].decode())
            self.assertEqual(dev.get_json("/v2/models/plain")[0], 200)
        finally:
            self.assertEqual(dev.close(), 0)

    def test_install_to_running_agent(self):
        import numpy as np
        from agent import Agent
        repo = tempfile.mkdtemp(dir=self.tmp)
        agent = Agent(repo, ["--trust-file", self.trust(), "--repository-poll-secs", "0"], signed_only=True)
        try:
            url = f"http://127.0.0.1:{agent.http_port}"
            r = outpost("install", self.pack("up.opkg"), "--url", url, env=agent.cli_env())
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("installed add_mul 1.0.0", r.stdout)
            a = np.ones((1, 4), np.float32)
            status, body = agent.infer_json("add_mul", {"a": a, "b": a})  # loaded before the upload returned
            self.assertEqual((status, body["model_version"]), (200, "1.0.0"))
            r = outpost("install", self.pack("up.opkg"), "--url", url, env=agent.cli_env())
            self.assertEqual(r.returncode, 1)
            self.assertIn("(409)", r.stderr)
            self.assertIn("already exists", r.stderr)
            before = tree(repo)
            d = os.path.join(self.tmp, "up2")
            shutil.copytree(self.src, d)
            self.write_template(d, "2.0.0")
            r = outpost("install", self.pack("up2.opkg", signers=(), src=d), "--url", url, env=agent.cli_env())
            self.assertEqual(r.returncode, 1)
            self.assertIn("(403)", r.stderr)
            self.assertIn("not signed", r.stderr)
            data = bytearray(read(self.pack("up3.opkg", src=d)))
            data[len(data) // 2] ^= 1
            with open(os.path.join(self.tmp, "up3bad.opkg"), "wb") as f:
                f.write(data)
            r = outpost("install", os.path.join(self.tmp, "up3bad.opkg"), "--url", url, env=agent.cli_env())
            self.assertEqual(r.returncode, 1)
            self.assertEqual(tree(repo), before, "a refused upload leaves nothing behind")
        finally:
            self.assertEqual(agent.close(), 0)

    def test_min_agent_version(self):
        from agent import Agent
        d = os.path.join(self.tmp, "future")
        shutil.copytree(self.src, d)
        self.write_template(d, "3.0.0", min_agent_version="99.0.0")
        p = self.pack("future.opkg", src=d)
        repo = tempfile.mkdtemp(dir=self.tmp)
        self.assertEqual(outpost("install", p, "--repository", repo, "--trust", self.trust()).returncode, 0)
        agent = Agent(repo, ["--trust-file", self.trust(), "--repository-poll-secs", "0"], signed_only=True)
        try:
            entry = agent.get_json("/v2/repository/index")[1][0]
            self.assertEqual(entry["state"], "UNAVAILABLE")
            self.assertIn("needs outpost 99.0.0 or newer; this agent is", entry["reason"])
            shutil.rmtree(os.path.join(repo, "add_mul"))
            r = outpost("install", p, "--url", f"http://127.0.0.1:{agent.http_port}", env=agent.cli_env())
            self.assertEqual(r.returncode, 1)
            self.assertIn("(409)", r.stderr)
            self.assertIn("needs outpost 99.0.0", r.stderr)
        finally:
            self.assertEqual(agent.close(), 0)

    def test_install_survives_sigkill(self):
        import random
        import signal
        import time
        d = os.path.join(self.tmp, "bigsrc")
        shutil.copytree(self.src, d)
        with open(os.path.join(d, "weights.bin"), "wb") as f:
            f.write(os.urandom(48 << 20))
        p = self.pack("big.opkg", src=d)
        manifest = json.loads(outpost("inspect", p, "--json").stdout)["manifest"]
        repo = tempfile.mkdtemp(dir=self.tmp)
        target = os.path.join(repo, "add_mul", "1.0.0")
        rng = random.Random(7)
        outcomes = set()
        for _ in range(8):
            proc = subprocess.Popen([OUTPOST, "install", p, "--repository", repo, "--trust", self.trust()],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.0, 0.6))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if os.path.exists(target):
                outcomes.add("complete")
                for f in manifest["files"]:  # a version that exists is whole
                    self.assertEqual(os.path.getsize(os.path.join(target, f["path"])), f["size"])
                shutil.rmtree(target)
            else:
                outcomes.add("absent")
            # Killed before it made the model's directory: nothing is there at all.
            model_dir = os.path.join(repo, "add_mul")
            visible = [n for n in os.listdir(model_dir) if not n.startswith(".")] if os.path.isdir(model_dir) else []
            self.assertEqual(visible, [], "nothing half-installed is visible")
        r = outpost("install", p, "--repository", repo, "--trust", self.trust())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(os.listdir(os.path.join(repo, "add_mul"))), ["1.0.0"], "stale staging was cleaned up")
        self.assertIn("absent", outcomes)

    # --- tampering ----------------------------------------------------------------------
    def test_flipped_bytes_anywhere(self):
        good = read(self.pack("f.opkg"))
        bad = os.path.join(self.tmp, "flipped.opkg")
        messages = set()
        # Every 512-byte block of the package, at an offset that moves through the block.
        for i, pos in enumerate(range(0, len(good), 512)):
            pos = min(len(good) - 1, pos + (i * 37) % 512)
            data = bytearray(good)
            data[pos] ^= 0x20
            with open(bad, "wb") as f:
                f.write(data)
            r = outpost("verify", bad, "--trust", self.trust())
            self.assertEqual(r.returncode, 1, f"a flip at byte {pos} of {len(good)} was accepted")
            # What failed, without the details (key ids, byte offsets): "package archive: header
            # checksum mismatch", "package: needs 1 valid signature(s)...", ...
            messages.add(re.split(r";| at byte", r.stderr.strip().removeprefix("outpost: "))[0])
        self.assertGreater(len(messages), 2, messages)

    def test_truncated(self):
        good = read(self.pack("t.opkg"))
        for cut in (100, 700, len(good) // 2, len(good) - 1024):
            bad = os.path.join(self.tmp, f"trunc{cut}.opkg")
            with open(bad, "wb") as f:
                f.write(good[:cut])
            self.assertRefused(bad, "truncated")

    def test_swapped_model_with_old_manifest(self):
        good = read(self.pack("s.opkg"))
        with tarfile.open(fileobj=io.BytesIO(good)) as t:
            members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
        other = read(os.path.join(FIXTURES, "dense", "1", "model.onnx"))
        info = members[-1][0]
        info.size = len(other)
        bad = os.path.join(self.tmp, "swapped.opkg")
        with open(bad, "wb") as f:
            f.write(tar_bytes(members[:-1] + [(info, other)]))
        self.assertRefused(bad, "'model.onnx' is %d bytes, the manifest says" % len(other))
        # Same size, other bytes: caught by the hash.
        same = bytearray(members[-1][1])
        same[-10:] = b"0123456789"
        info.size = len(same)
        with open(bad, "wb") as f:
            f.write(tar_bytes(members[:-1] + [(info, bytes(same))]))
        self.assertRefused(bad, "does not match its sha256")

    def test_replayed_older_signature_set(self):
        old = read(self.pack("v1.opkg", signers=("alice", "bob")))
        d = os.path.join(self.tmp, "v2src")
        shutil.copytree(self.src, d)
        self.write_template(d, "2.0.0")
        new = read(self.pack("v2.opkg", signers=(), src=d))
        with tarfile.open(fileobj=io.BytesIO(old)) as t:
            sigs = [(m, t.extractfile(m).read()) for m in t.getmembers() if m.name == "signatures.json"][0]
        with tarfile.open(fileobj=io.BytesIO(new)) as t:
            members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
        bad = os.path.join(self.tmp, "replayed.opkg")
        with open(bad, "wb") as f:
            f.write(tar_bytes(members[:1] + [sigs] + members[1:]))
        err = self.assertRefused(bad, "bad signature")
        self.assertIn("has 0", err)

    def test_revoked_key_and_threshold(self):
        p = self.pack("r.opkg", signers=("alice", "bob"))
        self.assertRefused(p, "revoked", trust=self.trust(threshold=2, revoked=("bob",)))
        self.assertRefused(p, "needs 3 valid signature(s) from trusted keys, has 2", trust=self.trust(threshold=3))
        self.assertRefused(p, "unknown key", trust=self.trust(threshold=1, keys=("carol",)))
        r = outpost("verify", p, "--trust", self.trust(threshold=2))
        self.assertEqual(r.returncode, 0, r.stderr)
        bad_trust = os.path.join(self.tmp, "bad-trust.json")
        with open(bad_trust, "w") as f:
            json.dump({"threshold": 2, "keys": [{"public": self.pub["alice"]}]}, f)
        r = outpost("verify", p, "--trust", bad_trust)
        self.assertIn("threshold 2 but only 1 trusted keys", r.stderr)

    def crafted(self, name, members):
        good = read(self.pack(name + ".src.opkg"))
        with tarfile.open(fileobj=io.BytesIO(good)) as t:
            head = [(m, t.extractfile(m).read()) for m in t.getmembers() if m.name in ("manifest.json", "signatures.json")]
        path = os.path.join(self.tmp, name + ".opkg")
        with open(path, "wb") as f:
            f.write(tar_bytes(head + members))
        return path

    def test_path_traversal_names(self):
        for evil in ("../evil", "/etc/evil", "a/../../evil", "model.onnx/../../x"):
            info = tarfile.TarInfo(evil)
            info.size = 3
            self.assertRefused(self.crafted("trav", [(info, b"bad")]), "unsafe file name")

    def test_symlink_inside(self):
        info = tarfile.TarInfo("model.onnx")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        self.assertRefused(self.crafted("link", [(info, None)]), "is a link")

    def test_huge_declared_size(self):
        good = read(self.pack("h.opkg"))
        with tarfile.open(fileobj=io.BytesIO(good)) as t:
            members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
        raw = bytearray(tar_bytes(members))
        # Rewrite the model's header to declare 8 GiB (ustar's largest size), with a valid checksum.
        off = next(o for o in range(0, len(raw), 512) if raw[o:o + 11] == b"model.onnx\0")
        header = raw[off:off + 512]
        header[124:136] = b"%011o\0" % (8**11 - 1)
        header[148:156] = b"        "
        header[148:156] = b"%06o\0 " % sum(header)
        raw[off:off + 512] = header
        bad = os.path.join(self.tmp, "huge.opkg")
        with open(bad, "wb") as f:
            f.write(raw)
        # Refused from the header, before any of the 8 GiB is read or written.
        self.assertRefused(bad, "'model.onnx' is 8589934591 bytes, the manifest says")

    def test_newer_format_refused(self):
        d = os.path.join(self.tmp, "newer")
        shutil.copytree(self.src, d)
        self.write_template(d, "1.0.0", format_version=2, rollout_hint="fast")
        r = outpost("pack", d, "-o", os.path.join(self.tmp, "n.opkg"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("format_version 2 is newer than this outpost understands (1): its field 'rollout_hint'", r.stderr)


if __name__ == "__main__":
    unittest.main()
