#!/usr/bin/python3
"""Full vs delta model update of a ~100 MB model, end to end through real outpostd agents.

Two devices run version 1.0.0 of a 100 MB model. Version 2.0.0 changes 1 MB of its weights
(a fine-tuned layer). Device "full" updates from a repository that offers only the whole
package; device "delta" from one that also offers a zstd delta against 1.0.0. Prints the
bytes each downloaded and the time each update took (check start to commit), optionally over
a capped link (--rate bytes/s) to stand in for a real network.

Usage: bench/update_bench.py [--build build] [--mb 100] [--rate 4000000]
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--rate", type=int, default=0, help="bandwidth cap in bytes/s (0: loopback speed)")
    args = ap.parse_args()
    os.environ["OUTPOST_BIN_DIR"] = os.path.join(os.path.abspath(args.build), "bin")

    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import update_repo
    from agent import Agent
    from update_repo import RepoServer, UpdateRepo, must

    tmp = tempfile.mkdtemp(prefix="outpost-update-bench-")
    try:
        weights = np.random.default_rng(1).standard_normal(args.mb * (1 << 20) // 4).astype(np.float32)

        def model(version, factor, w):
            src = os.path.join(tmp, f"src-{version}")
            os.makedirs(src)
            g = helper.make_graph(
                [helper.make_node("Mul", ["x", "factor"], ["y"])], "big",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                [numpy_helper.from_array(np.full([4], factor, np.float32), "factor"),
                 numpy_helper.from_array(w, "weights")])
            m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
            m.ir_version = 8
            onnx.save(m, os.path.join(src, "model.onnx"))
            with open(os.path.join(src, "manifest.json"), "w") as f:
                json.dump({"name": "big", "version": version}, f)
            out = os.path.join(tmp, f"big-{version}.opkg")
            must("pack", src, "-o", out, timeout=900)
            must("sign", out, "--key", repos["full"].keys["signer"], timeout=900)
            return out

        os.makedirs(os.path.join(tmp, "full"))
        repos = {"full": UpdateRepo(os.path.join(tmp, "full"))}
        os.makedirs(os.path.join(tmp, "delta"))
        shutil.copytree(repos["full"].dir, os.path.join(tmp, "delta", "repo"))
        delta_repo = UpdateRepo.__new__(UpdateRepo)
        delta_repo.__dict__.update(repos["full"].__dict__)
        delta_repo.dir = os.path.join(tmp, "delta", "repo")
        repos["delta"] = delta_repo

        v1 = model("1.0.0", 1.0, weights)
        changed = weights.copy()
        changed[: (1 << 20) // 4] *= 1.01  # one fine-tuned megabyte
        v2 = model("2.0.0", 2.0, changed)
        for r in repos.values():
            r.add(v1)
        repos["full"].add(v2)
        t = time.monotonic()
        repos["delta"].add(v2, delta_from=v1)
        make_delta_s = time.monotonic() - t
        delta_file = next(p for n, p in repos["delta"].target_files().items() if n.endswith(".zst"))

        results = {}
        for name, r in repos.items():
            models = os.path.join(tmp, name, "models")
            must("install", v1, "--repository", models, "--trust", r.trust, timeout=900)
            server = RepoServer(r.dir)
            cfg = os.path.join(tmp, name, "agent.json")
            with open(cfg, "w") as f:
                json.dump({"update_url": server.url, "update_root": r.root, "update_check_on_start": False,
                           "update_canary_secs": 0, "update_max_bytes_per_second": args.rate}, f)
            agent = Agent(models, ["--config", cfg, "--trust-file", r.trust], grpc=False, signed_only=True)
            try:
                t = time.monotonic()
                status, _, body = agent.request("POST", "/v2/updates/check", timeout=3600)
                took = time.monotonic() - t
                st = json.loads(body)
                ev = st["events"][-1]
                assert status == 200 and ev["outcome"] == "committed", st
                results[name] = (ev["bytes_downloaded"], took, ev["seconds"], ev["delta"])
            finally:
                agent.close()
                server.close()

        full_size, delta_size = os.path.getsize(v2), os.path.getsize(delta_file)
        print(f"model package  {full_size / 1e6:8.1f} MB   delta {delta_size / 1e6:8.3f} MB "
              f"(made in {make_delta_s:.1f} s)   link: {'%.1f MB/s cap' % (args.rate / 1e6) if args.rate else 'loopback'}")
        print(f"{'device':8} {'downloaded':>14} {'check->commit':>14} {'update':>8}  delta")
        for name, (b, took, secs, used) in results.items():
            print(f"{name:8} {b:14,d} {took:12.2f} s {secs:6.2f} s  {used}")
        b_full, t_full = results["full"][0], results["full"][1]
        b_delta, t_delta = results["delta"][0], results["delta"][1]
        print(f"delta downloaded {b_delta / delta_size:.3f}x the delta's size (target <= 1.2x); "
              f"{b_full / b_delta:.0f}x fewer bytes and {t_full / t_delta:.2f}x faster than the full update")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
