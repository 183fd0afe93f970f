"""Model control as Triton has it: an agent in --model-control-mode explicit loads only what it
is told (--load-model at start, POST /v2/repository/models/NAME/load and /unload with an admin
credential, `outpost models load|unload`); requests in flight on an unloaded model finish;
repository changes wait for the next load; the other modes refuse the calls."""
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import numpy as np

from agent import BIN_DIR, FIXTURES, Agent, SignedRepository, add_version, copy_fixtures, write_package_manifest

OUTPOST = os.path.join(BIN_DIR, "outpost")
ONES = np.ones((1, 4), np.float32)


class ExplicitControlTest(unittest.TestCase):
    def setUp(self):
        self.repo = copy_fixtures(["add_mul", "identity", "slow"])
        self.agent = Agent(self.repo, ["--model-control-mode", "explicit", "--load-model", "identity"])

    def tearDown(self):
        rc = self.agent.close()
        shutil.rmtree(self.repo)
        self.assertEqual(rc, 0, self.agent.logs())

    def index(self):
        return {(e["name"], e.get("version", "")): e for e in self.agent.get_json("/v2/repository/index")[1]}

    def control(self, model, action, body=None, key="admin"):
        status, _, raw = self.agent.request("POST", f"/v2/repository/models/{model}/{action}", body, key=key)
        return status, json.loads(raw) if raw else None

    def outpost(self, *args):
        return subprocess.run([OUTPOST, *args, "--url", f"http://127.0.0.1:{self.agent.http_port}"],
                              capture_output=True, text=True, timeout=120, env=self.agent.cli_env())

    def test_only_the_named_models_load_at_start(self):
        index = self.index()
        self.assertEqual(index[("identity", "1")]["state"], "READY")
        for model in ("add_mul", "slow"):
            self.assertEqual(index[(model, "1")]["state"], "UNAVAILABLE")
            self.assertEqual(index[(model, "1")]["reason"], "unloaded")
        status, body = self.agent.infer_binary("add_mul", {"a": ONES, "b": ONES})
        self.assertEqual(status, 503)
        self.assertIn("unloaded", body["error"])

    def test_load_serves_and_unload_stops_serving(self):
        status, entries = self.control("add_mul", "load")
        self.assertEqual(status, 200, entries)
        self.assertEqual([(e["name"], e["version"], e["state"]) for e in entries], [("add_mul", "1", "READY")])
        status, out = self.agent.infer_binary("add_mul", {"a": ONES, "b": ONES})
        self.assertEqual(status, 200, out)
        np.testing.assert_array_equal(out["sum"], ONES + ONES)
        # Loading what is loaded changes nothing.
        self.assertEqual(self.control("add_mul", "load")[0], 200)

        self.assertEqual(self.control("add_mul", "unload"), (200, []))
        self.assertEqual(self.agent.infer_binary("add_mul", {"a": ONES, "b": ONES})[0], 503)
        self.assertEqual(self.index()[("add_mul", "1")]["reason"], "unloaded")
        self.assertEqual(self.index()[("identity", "1")]["state"], "READY")  # the others are untouched
        self.assertRegex(self.agent.logs(), r"model add_mul unloaded on request \(by opk_[0-9a-f]+\)")

    def test_repository_changes_wait_for_the_next_load(self):
        add_version(self.repo, "identity", "2", os.path.join(FIXTURES, "identity", "1"))
        shutil.rmtree(os.path.join(self.repo, "slow"))
        # Another model's load scans the repository too, and applies nothing outside that model.
        self.assertEqual(self.control("add_mul", "load")[0], 200)
        index = self.index()
        self.assertNotIn(("identity", "2"), index)
        self.assertEqual(self.agent.get_json("/v2/models/identity")[1]["versions"], ["1"])
        status, entries = self.control("identity", "load")
        self.assertEqual(status, 200, entries)
        self.assertEqual(sorted((e["version"], e["state"]) for e in entries), [("1", "READY"), ("2", "READY")])
        self.assertEqual(self.control("slow", "load")[0], 404)

    def test_requests_in_flight_finish_on_an_unloaded_model(self):
        self.assertEqual(self.control("slow", "load")[0], 200)
        results = []
        big = np.ones((128, 512), np.float32)
        threads = [threading.Thread(target=lambda: results.append(self.agent.infer_binary("slow", {"x": big})))
                   for _ in range(2)]
        for t in threads:
            t.start()
        try:
            # `slow` runs one request at a time: one waiting in its queue means both hold the model.
            deadline = time.time() + 30
            while self.pending("slow") < 1:
                self.assertLess(time.time(), deadline, "no request waited for the slow model")
                time.sleep(0.02)
            self.assertEqual(self.control("slow", "unload")[0], 200)
        finally:
            for t in threads:
                t.join()
        self.assertEqual([r[0] for r in results], [200, 200], results)
        self.assertEqual(self.agent.infer_binary("slow", {"x": big})[0], 503)

    def pending(self, model):
        _, _, raw = self.agent.request("GET", "/metrics")
        prefix = f'outpost_inference_pending_requests{{model="{model}",'
        return sum(float(line.split()[-1]) for line in raw.decode().splitlines() if line.startswith(prefix))

    def test_refusals_say_why(self):
        status, body = self.control("add_mul", "load", key=None)
        self.assertEqual(status, 401, body)
        status, body = self.control("nothing_here", "load")
        self.assertEqual(status, 404)
        self.assertIn("'nothing_here' is not in the model repository", body["error"])
        status, body = self.control("nothing_here", "unload")
        self.assertEqual(status, 404)
        status, body = self.control("add_mul", "load", json.dumps({"parameters": {"config": "{}"}}))
        self.assertEqual(status, 400)
        self.assertIn("parameter 'config' is not supported", body["error"])
        self.assertEqual(self.control("add_mul", "load", "[1]")[0], 400)
        self.assertEqual(self.control("add_mul", "load", json.dumps({"parameters": {}}))[0], 200)
        self.assertEqual(self.control("add_mul", "unload", json.dumps({"parameters": {"unload_dependents": True}}))[0], 200)
        # A model whose files do not load: the reason, and the index keeps it.
        os.makedirs(os.path.join(self.repo, "broken", "1"))
        with open(os.path.join(self.repo, "broken", "1", "model.onnx"), "wb") as f:
            f.write(b"not a model")
        status, body = self.control("broken", "load")
        self.assertEqual(status, 409)
        self.assertIn("failed to load 'broken'", body["error"])
        entry = self.index()[("broken", "1")]
        self.assertEqual(entry["state"], "UNAVAILABLE")
        self.assertNotEqual(entry["reason"], "unloaded")

    def test_grpc_repository_extension(self):
        import grpc
        stub, pb2 = self.agent.grpc()
        admin = [("authorization", "Bearer " + self.agent.admin_key)]
        index = stub.RepositoryIndex(pb2.RepositoryIndexRequest())
        self.assertEqual({(m.name, m.state, m.reason) for m in index.models},
                         {("identity", "READY", ""), ("add_mul", "UNAVAILABLE", "unloaded"),
                          ("slow", "UNAVAILABLE", "unloaded")})
        self.assertEqual([m.name for m in stub.RepositoryIndex(pb2.RepositoryIndexRequest(ready=True)).models],
                         ["identity"])
        stub.RepositoryModelLoad(pb2.RepositoryModelLoadRequest(model_name="add_mul"), metadata=admin)
        out = self.agent.infer_grpc("add_mul", {"a": ONES, "b": ONES})
        np.testing.assert_array_equal(out["sum"], ONES + ONES)
        stub.RepositoryModelUnload(pb2.RepositoryModelUnloadRequest(model_name="add_mul"), metadata=admin)
        with self.assertRaises(grpc.RpcError) as e:
            self.agent.infer_grpc("add_mul", {"a": ONES, "b": ONES})
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        refusals = [
            (pb2.RepositoryModelLoadRequest(model_name="add_mul"), None, grpc.StatusCode.UNAUTHENTICATED, ""),
            (pb2.RepositoryModelLoadRequest(model_name="nothing_here"), admin, grpc.StatusCode.NOT_FOUND,
             "not in the model repository"),
            (pb2.RepositoryModelLoadRequest(model_name="add_mul", parameters={
                "config": pb2.ModelRepositoryParameter(string_param="{}")}), admin,
             grpc.StatusCode.INVALID_ARGUMENT, "parameter 'config' is not supported"),
        ]
        for request, metadata, code, fragment in refusals:
            with self.subTest(request=str(request)), self.assertRaises(grpc.RpcError) as e:
                stub.RepositoryModelLoad(request, metadata=metadata)
            self.assertEqual(e.exception.code(), code)
            self.assertIn(fragment, e.exception.details())

    def test_cli(self):
        r = self.outpost("models", "load", "add_mul")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"add_mul\s+1\s+READY")
        r = self.outpost("models", "unload", "add_mul")
        self.assertEqual((r.returncode, r.stdout), (0, "unloaded add_mul\n"), r.stderr)
        r = self.outpost("models", "load", "nothing_here")
        self.assertEqual(r.returncode, 1)
        self.assertIn("not in the model repository", r.stderr)
        r = self.outpost("models", "load", "../etc")
        self.assertEqual(r.returncode, 2)
        self.assertIn("is not a model name", r.stderr)


class OtherModesTest(unittest.TestCase):
    def test_every_model_with_a_star_and_each_one_unloadable(self):
        repo = copy_fixtures(["add_mul", "identity"])
        agent = Agent(repo, ["--model-control-mode", "explicit", "--load-model", "*"])
        try:
            states = {e["name"]: e["state"] for e in agent.get_json("/v2/repository/index")[1]}
            self.assertEqual(states, {"add_mul": "READY", "identity": "READY"})
            self.assertEqual(agent.request("POST", "/v2/repository/models/add_mul/unload")[0], 200)
            self.assertEqual(agent.infer_binary("add_mul", {"a": ONES, "b": ONES})[0], 503)
        finally:
            self.assertEqual(agent.close(), 0)
            shutil.rmtree(repo)

    def test_an_uploaded_package_is_loaded(self):
        # Installing through the agent asks for the model to be served (an OTA update likewise).
        tmp = tempfile.mkdtemp(prefix="outpost-explicit-")
        try:
            signed = SignedRepository(tmp)
            src = os.path.join(tmp, "src")
            shutil.copytree(os.path.join(FIXTURES, "add_mul", "1"), src)
            write_package_manifest(src, "uploaded", runtime="onnx")
            package = os.path.join(tmp, "uploaded.opkg")
            for args in (["pack", src, "-o", package], ["sign", package, "--key", signed.key]):
                r = subprocess.run([OUTPOST, *args], capture_output=True, text=True)
                self.assertEqual(r.returncode, 0, r.stderr)
            agent = Agent(signed.path, ["--trust-file", signed.trust, "--model-control-mode", "explicit"],
                          signed_only=True)
            try:
                with open(package, "rb") as f:
                    status, _, raw = agent.request("POST", "/v2/repository/packages", f.read(),
                                                   {"Content-Type": "application/octet-stream"})
                self.assertEqual(status, 201, raw)
                self.assertEqual(json.loads(raw)["state"], "READY", raw)
                self.assertEqual(agent.infer_binary("uploaded", {"a": ONES, "b": ONES})[0], 200)
            finally:
                self.assertEqual(agent.close(), 0)
        finally:
            shutil.rmtree(tmp)

    def test_poll_and_none_refuse_explicit_calls(self):
        repo = copy_fixtures(["add_mul"])
        try:
            for args, mode in (([], "poll"), (["--model-control-mode", "none"], "none")):
                agent = Agent(repo, args)
                try:
                    status, _, raw = agent.request("POST", "/v2/repository/models/add_mul/unload")
                    self.assertEqual(status, 409)
                    self.assertIn(f"only with --model-control-mode explicit (this agent's mode is {mode})",
                                  json.loads(raw)["error"])
                    self.assertEqual(agent.infer_binary("add_mul", {"a": ONES, "b": ONES})[0], 200)
                finally:
                    self.assertEqual(agent.close(), 0)
            r = subprocess.run([os.path.join(BIN_DIR, "outpostd"), "--model-repository", repo,
                                "--load-model", "add_mul", "--http-port", "0", "--grpc-port", "0"],
                               capture_output=True, text=True, timeout=60)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("load_model needs model_control_mode explicit", r.stderr + r.stdout)
        finally:
            shutil.rmtree(repo)


if __name__ == "__main__":
    unittest.main()
