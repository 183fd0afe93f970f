"""Models held in memory only while they earn it: resident bytes are attributed to each version
at load (index and metrics, next to the files' size); loading past --memory-budget-mb unloads the
least recently used idle model; a model idle past its keep_alive_secs unloads; a request to an
unloaded model loads it again and succeeds."""
import json
import os
import shutil
import tempfile
import time
import unittest

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from agent import Agent, copy_fixtures, rss_mb

N = 2048  # a 2048x2048 float weight: 16 MiB per model


def write_model(repo, name, seed):
    w = np.random.default_rng(seed).standard_normal((N, N)).astype(np.float32) / N
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, N])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, N])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    os.makedirs(os.path.join(repo, name, "1"))
    onnx.save(model, os.path.join(repo, name, "1", "model.onnx"))
    return w


class MemoryBudgetTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.repo = tempfile.mkdtemp(prefix="outpost-budget-")
        cls.weights = {name: write_model(cls.repo, name, seed) for seed, name in enumerate(("a", "b", "c"))}
        # Without a budget: what each model holds.
        agent = Agent(cls.repo, ["--repository-poll-secs", "0"])
        try:
            cls.held = {e["name"]: e for e in agent.get_json("/v2/repository/index")[1]}
            _, _, raw = agent.request("GET", "/metrics")
            cls.metrics = raw.decode()
        finally:
            assert agent.close() == 0

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.repo)

    def test_resident_bytes_are_attributed_next_to_the_files(self):
        print()
        for name, e in sorted(self.held.items()):
            print(f"{name}: {e['memory_bytes'] / 2**20:.1f} MiB resident for {e['file_bytes'] / 2**20:.1f} MiB of files")
            self.assertEqual(e["state"], "READY")
            self.assertGreaterEqual(e["file_bytes"], N * N * 4)
            self.assertGreaterEqual(e["memory_bytes"], e["file_bytes"])
            self.assertIn(f'outpost_model_memory_bytes{{model="{name}",version="1"}} {e["memory_bytes"]}',
                          self.metrics)

    def test_least_recently_used_idle_model_makes_room(self):
        sizes = {name: e["memory_bytes"] for name, e in self.held.items()}
        # Room for any two of the three, not for all three.
        budget = sum(sizes.values()) - min(sizes.values()) / 2
        agent = Agent(self.repo, ["--repository-poll-secs", "0", "--memory-budget-mb", f"{budget / 2**20:.3f}"])
        try:
            def states():
                index = {e["name"]: e for e in agent.get_json("/v2/repository/index")[1]}
                ready = [n for n, e in index.items() if e["state"] == "READY"]
                self.assertLessEqual(sum(index[n]["memory_bytes"] for n in ready), budget)
                return {n: e["state"] for n, e in index.items()}, index

            def infer(name):
                x = np.ones((1, N), np.float32)
                status, out = agent.infer_binary(name, {"x": x})
                self.assertEqual(status, 200, out)
                np.testing.assert_allclose(out["y"], x @ self.weights[name], rtol=1e-4, atol=1e-5)

            # Loaded in name order: c's load pushed out a, the least recently used.
            got, index = states()
            self.assertEqual(got, {"a": "UNAVAILABLE", "b": "READY", "c": "READY"})
            self.assertIn("memory budget", index["a"]["reason"])
            infer("a")  # loads a again, pushing out b (loaded before c, neither used since)
            self.assertEqual(states()[0], {"a": "READY", "b": "UNAVAILABLE", "c": "READY"})
            infer("c")
            infer("b")  # a was used before c: a goes
            self.assertEqual(states()[0], {"a": "UNAVAILABLE", "b": "READY", "c": "READY"})
            _, _, raw = agent.request("GET", "/metrics")
            self.assertIn("outpost_model_memory_budget_bytes ", raw.decode())
            logs = agent.logs()
            self.assertIn("model a unloaded to make room for c", logs)
            self.assertIn("model a loaded again for a request in", logs)
        finally:
            self.assertEqual(agent.close(), 0)


class KeepAliveTest(unittest.TestCase):
    def test_an_idle_model_unloads_and_loads_again_on_its_next_request(self):
        repo = copy_fixtures(["add_mul", "identity"])
        with open(os.path.join(repo, "add_mul", "1", "manifest.json"), "w") as f:
            json.dump({"keep_alive_secs": 1}, f)
        agent = Agent(repo, ["--model-control-mode", "none"])
        try:
            a = np.ones((1, 4), np.float32)
            self.assertEqual(agent.infer_binary("add_mul", {"a": a, "b": a})[0], 200)

            def entry(name):
                return next(e for e in agent.get_json("/v2/repository/index")[1] if e["name"] == name)
            deadline = time.time() + 30
            while entry("add_mul")["state"] == "READY":
                self.assertLess(time.time(), deadline, "add_mul never unloaded")
                time.sleep(0.1)
            self.assertIn("after 1 s without requests (keep_alive_secs)", entry("add_mul")["reason"])
            self.assertEqual(entry("identity")["state"], "READY")  # no keep_alive: stays
            status, out = agent.infer_binary("add_mul", {"a": a, "b": a})
            self.assertEqual(status, 200, out)
            np.testing.assert_array_equal(out["sum"], a + a)
            # (Not the index: a second's stall here would let it unload again, rightly.)
            self.assertIn("model add_mul loaded again for a request in", agent.logs())
        finally:
            self.assertEqual(agent.close(), 0)
            shutil.rmtree(repo)


if __name__ == "__main__":
    unittest.main()


class LargeRequestMemoryTest(unittest.TestCase):
    """Camera frames keep their buffers while they keep coming (no page faults per frame) and the
    agent gives the memory back once they stop: the frames' buffers and ORT's grown arena (a
    1080p frame becomes a 24 MB float tensor inside frame_mean)."""

    def test_memory_returns_after_a_burst_of_frames(self):
        repo = copy_fixtures(["frame_mean"])
        agent = Agent(repo, grpc=False)
        try:
            pid = agent.proc.pid
            frame = np.random.default_rng(4).integers(0, 255, (1, 1080, 1920, 3), dtype=np.uint8)
            agent.infer_binary("frame_mean", {"frame": frame[:, :8, :8]})  # paths warmed on a small one
            idle = rss_mb(pid)
            peak = idle
            for _ in range(6):
                status, out = agent.infer_binary("frame_mean", {"frame": frame})
                self.assertEqual(status, 200, out)
                peak = max(peak, rss_mb(pid))
            np.testing.assert_allclose(out["mean"], frame.astype(np.float32).mean(axis=(1, 2)), rtol=1e-5)
            # Held while frames come: the float copy of a frame alone is 24 MB.
            self.assertGreater(peak - idle, 24, (idle, peak))
            deadline = time.time() + 30
            while time.time() < deadline and rss_mb(pid) - idle > 16:
                time.sleep(0.2)
            # Back within a frame's buffer or two (a thread's heap keeps up to 8 MiB at its top).
            self.assertLess(rss_mb(pid) - idle, 16, (idle, peak, rss_mb(pid)))
        finally:
            rc = agent.close()
            shutil.rmtree(repo)
            self.assertEqual(rc, 0, agent.logs())
