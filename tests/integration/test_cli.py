"""outpostd's flags and config file, its listeners, and the outpost command line, run as
real processes."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from agent import BIN_DIR, Agent, copy_fixtures, free_port
from swtpm import SoftwareTpm

OUTPOSTD = os.path.join(BIN_DIR, "outpostd")
OUTPOST = os.path.join(BIN_DIR, "outpost")


def run(*args, timeout=60, env=None):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env)


def listening_addresses(pid):
    """Local addresses of the process's listening TCP sockets, from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:  # 0A: LISTEN
                    found.append(parts[1])
    return found


class CliTest(unittest.TestCase):
    def setUp(self):
        self.repo = copy_fixtures(["add_mul"])
        self.tmp = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.repo)
        shutil.rmtree(self.tmp)

    def test_config_file_and_flag_precedence(self):
        cfg = os.path.join(self.tmp, "c.json")
        with open(cfg, "w") as f:
            json.dump({"http_port": 1234, "grpc_port": 0, "default_timeout_ms": 777, "model_repository": "/x"}, f)
        out = run(OUTPOSTD, "--config", cfg, "--http-port", "4321", "--print-config")
        self.assertEqual(out.returncode, 0, out.stderr)
        effective = json.loads(out.stdout)
        self.assertEqual(effective["http_port"], 4321)  # the flag wins
        self.assertEqual(effective["grpc_port"], 0)     # the file wins over the default
        self.assertEqual(effective["default_timeout_ms"], 777)
        self.assertEqual(effective["http_address"], "127.0.0.1")  # embedded default

    def test_bad_configuration_is_one_clear_line(self):
        cfg = os.path.join(self.tmp, "c.json")
        for content, fragment in [('{"http_prot": 1}', "config: unknown field 'http_prot'"), ("{", "not valid JSON"),
                                  ('{"http_port": "x"}', "config: 'http_port' must be an integer")]:
            with open(cfg, "w") as f:
                f.write(content)
            out = run(OUTPOSTD, "--config", cfg, "--model-repository", self.repo)
            self.assertEqual(out.returncode, 2, out.stderr)
            self.assertIn(fragment, out.stderr)
        out = run(OUTPOSTD, "--model-repository", self.repo, "--http-port", "70000")
        self.assertEqual(out.returncode, 2)
        self.assertIn("http_port (--http-port) must be 0..65535", out.stderr)
        out = run(OUTPOSTD, "--model-repository", self.repo, "--log-level", "loud", "--http-port", "0")
        self.assertEqual(out.returncode, 2)
        self.assertIn("unknown log level 'loud'", out.stderr)

    def test_json_logs_stay_json(self):
        os.makedirs(os.path.join(self.repo, 'bad"name\\x', "1"))
        agent = Agent(self.repo, ["--log-format", "json"])
        self.assertEqual(agent.close(), 0)
        lines = [json.loads(line) for line in agent.logs().splitlines()]
        self.assertTrue(any('bad"name\\x' in e["msg"] and e["level"] == "warn" for e in lines), lines)
        self.assertTrue(all({"time", "level", "component", "event", "msg"} <= set(e) for e in lines))

    def test_unusable_execution_provider_falls_back_to_cpu(self):
        agent = Agent(self.repo, ["--execution-providers", "NopeExecutionProvider", "CUDAExecutionProvider"])
        try:
            import numpy as np
            a = np.ones((1, 4), np.float32)
            status, out = agent.infer_binary("add_mul", {"a": a, "b": a})
            self.assertEqual(status, 200, out)
        finally:
            index = agent.get_json("/v2/repository/index")[1]
            self.assertEqual(agent.close(), 0)
        self.assertIn("NopeExecutionProvider cannot be used (not in this ONNX Runtime build), trying the next provider",
                      agent.logs())
        self.assertEqual(index[0]["execution_provider"], "CPUExecutionProvider")
        self.assertEqual([s["provider"] for s in index[0]["providers_skipped"]],
                         ["NopeExecutionProvider", "CUDAExecutionProvider"])

    def test_outpost_infer(self):
        import numpy as np
        a = np.arange(8, dtype=np.float32).reshape(2, 4)
        np.save(os.path.join(self.tmp, "a.npy"), a)
        with open(os.path.join(self.tmp, "b.json"), "w") as f:
            json.dump([[1, 1, 1, 1], [2, 2, 2, 2]], f)
        with open(os.path.join(self.tmp, "bad.npy"), "wb") as f:
            f.write(b"\x93NUMPY\x01\x00\x10\x00{'descr': '>f4'")
        agent = Agent(self.repo)
        try:
            url = f"http://127.0.0.1:{agent.http_port}"
            out_dir = os.path.join(self.tmp, "outs")
            r = run(OUTPOST, "infer", "add_mul", "--url", url, "-i", f"a={self.tmp}/a.npy", "-i", f"b={self.tmp}/b.json",
                    "--output-dir", out_dir, "--json", env=agent.cli_env())
            self.assertEqual(r.returncode, 0, r.stderr)
            body = json.loads(r.stdout)
            outs = {o["name"]: o for o in body["outputs"]}
            self.assertEqual(outs["sum"]["data"], [1, 2, 3, 4, 6, 7, 8, 9])
            np.testing.assert_array_equal(np.load(os.path.join(out_dir, "prod.npy")), a * np.array([[1], [2]], np.float32))
            r = run(OUTPOST, "infer", "add_mul", "--url", url, "-i", f"a={self.tmp}/a.npy", "-o", "sum", env=agent.cli_env())
            self.assertEqual(r.returncode, 1)
            self.assertIn("needs input 'b'", r.stderr)
            r = run(OUTPOST, "infer", "add_mul", "--url", url, "-i", f"a={self.tmp}/bad.npy", "-i", f"b={self.tmp}/b.json",
                    env=agent.cli_env())
            self.assertEqual(r.returncode, 1)
            self.assertIn("bad.npy", r.stderr)
            r = run(OUTPOST, "infer", "nope", "--url", url, "-i", f"a={self.tmp}/a.npy", env=agent.cli_env())
            self.assertEqual(r.returncode, 1)
            self.assertIn("not in the repository", r.stderr)
        finally:
            self.assertEqual(agent.close(), 0)

    def test_port_in_use_is_reported(self):
        agent = Agent(self.repo)
        try:
            out = run(OUTPOSTD, "--model-repository", self.repo, "--http-port", str(agent.http_port), "--grpc-port", "0",
                      "--auth-dir", agent.auth_dir)
            self.assertEqual(out.returncode, 1)
            self.assertIn(f"cannot listen for HTTP on 127.0.0.1:{agent.http_port}", out.stderr)
            out = run(OUTPOSTD, "--model-repository", self.repo, "--http-port", "0", "--grpc-port", str(agent.grpc_port),
                      "--auth-dir", agent.auth_dir)
            self.assertEqual(out.returncode, 1)
            self.assertIn(f"cannot listen for gRPC on 127.0.0.1:{agent.grpc_port}", out.stderr)
        finally:
            self.assertEqual(agent.close(), 0)

    def test_listeners_bind_loopback_and_separate_metrics_port(self):
        metrics_port = free_port()
        agent = Agent(self.repo, ["--metrics-port", str(metrics_port)])
        try:
            addresses = listening_addresses(agent.proc.pid)
            self.assertEqual(len(addresses), 3, addresses)
            for a in addresses:
                host = a.split(":")[0]
                # 0100007F is 127.0.0.1; the IPv6 form maps it (::ffff:127.0.0.1).
                self.assertTrue(host == "0100007F" or host.endswith("FFFF00000100007F") or host.endswith("0100007F"), a)
            status, _, body = agent.request("GET", "/metrics")
            self.assertEqual(status, 404)
            import http.client
            c = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
            c.request("GET", "/metrics")
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            self.assertIn(b"process_resident_memory_bytes", r.read())
        finally:
            self.assertEqual(agent.close(), 0)

    def test_outpost_cli(self):
        out = run(OUTPOST, "info", "--json")
        self.assertEqual(out.returncode, 0, out.stderr)
        info = json.loads(out.stdout)
        self.assertGreater(info["cpu"]["logical_cores"], 0)
        self.assertIn("CPUExecutionProvider", info["onnxruntime"]["execution_providers"])
        self.assertIn("version", info["onnxruntime"])
        self.assertIn(info["security"]["secure_boot"], {"not UEFI", "unknown", "enabled", "disabled", "setup mode"})
        self.assertIn(info["security"]["lockdown"], {"not available", "none", "integrity", "confidentiality"})
        self.assertEqual(run(OUTPOST, "info").returncode, 0)
        # A TPM (a software one here) is found through OUTPOST_TPM_TCTI and named.
        with tempfile.TemporaryDirectory() as d, SoftwareTpm(d) as tpm:
            out = subprocess.run([OUTPOST, "info", "--json"], capture_output=True, text=True, env=tpm.env(), timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(json.loads(out.stdout)["security"]["tpm"],
                             {"present": True, "manufacturer": "IBM", "tcti": tpm.tcti})
            out = subprocess.run([OUTPOST, "info"], capture_output=True, text=True, env=tpm.env(), timeout=60)
            self.assertIn(f"tpm            IBM ({tpm.tcti})", out.stdout)
        self.assertEqual(run(OUTPOST, "--help").returncode, 0)
        self.assertNotEqual(run(OUTPOST, "bogus").returncode, 0)
        dead = f"http://127.0.0.1:{free_port()}"
        out = run(OUTPOST, "health", "--url", dead)
        self.assertEqual(out.returncode, 3)
        self.assertIn("cannot reach the agent", out.stderr)
        agent = Agent(self.repo)
        try:
            url = f"http://127.0.0.1:{agent.http_port}"
            out = run(OUTPOST, "models", "--url", url, "--json", env=agent.cli_env())
            self.assertEqual(out.returncode, 0, out.stderr)
            [entry] = json.loads(out.stdout)
            file_bytes = os.path.getsize(os.path.join(agent.repository, "add_mul", "1", "model.onnx"))
            self.assertEqual(entry.pop("file_bytes"), file_bytes)
            self.assertGreaterEqual(entry.pop("memory_bytes"), file_bytes)
            self.assertEqual(entry, {"name": "add_mul", "state": "READY", "version": "1",
                                     "execution_provider": "CPUExecutionProvider"})
            out = run(OUTPOST, "health", "--url", url, env=agent.cli_env())
            self.assertEqual(out.returncode, 0)
            self.assertIn("ready yes", out.stdout)
        finally:
            self.assertEqual(agent.close(), 0)


if __name__ == "__main__":
    unittest.main()
