#!/usr/bin/python3
"""Runs the ONNX project's own test cases (Debian's libonnx-testdata) through a running
outpostd over HTTP/JSON, HTTP with binary tensors, and gRPC, and compares every output with
the expected one (rtol 1e-3, atol 1e-7: the ONNX backend tests' own tolerance).

Every case that does not pass must be listed in conformance_expected.txt with its cause; the
run fails on an unlisted failure and on a listed case that now passes (so the list stays true).
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict

import grpc
import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

sys.path.insert(0, os.path.dirname(__file__))
from agent import KSERVE_TO_NP, Agent, from_raw, kserve_dtype, to_raw  # noqa: E402

DATA = "/usr/share/libonnx-testdata/data"
CATEGORIES = ["node", "pytorch-converted", "pytorch-operator", "simple"]
PROTOCOLS = ["http-json", "http-binary", "grpc"]


def load_tensor(path):
    t = onnx.load_tensor(path)
    arr = numpy_helper.to_array(t)
    if t.data_type == TensorProto.BFLOAT16:
        # onnx 1.12 widens bfloat16 to float32; the wire wants the 16-bit pattern.
        arr = (np.ascontiguousarray(arr, np.float32).view(np.uint32) >> 16).astype(np.uint16)
        return t.name, arr, "BF16"
    if arr.dtype.kind in "SUO":
        arr = np.array([x if isinstance(x, bytes) else str(x).encode() for x in arr.reshape(-1)],
                       dtype=np.object_).reshape(arr.shape)
    return t.name, arr, kserve_dtype(arr)


def collect(categories, only=None):
    cases = []
    for cat in categories:
        root = os.path.join(DATA, cat)
        for name in sorted(os.listdir(root)):
            d = os.path.join(root, name)
            if only and name not in only:
                continue
            if os.path.isfile(os.path.join(d, "model.onnx")):
                sets = sorted(x for x in os.listdir(d) if x.startswith("test_data_set_"))
                cases.append((cat, name, d, sets))
    return cases


def graph_io(model_path):
    """Input and output names in graph order, and the names whose element type is bfloat16."""
    m = onnx.load(model_path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    bf16 = {v.name for v in list(m.graph.input) + list(m.graph.output)
            if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type == TensorProto.BFLOAT16}
    return [i.name for i in m.graph.input if i.name not in inits], [o.name for o in m.graph.output], bf16


def read_set(case_dir, ds, in_names, out_names, bf16):
    d = os.path.join(case_dir, ds)
    ins, outs = [], []
    for prefix, names, into in (("input_", in_names, ins), ("output_", out_names, outs)):
        files = sorted((f for f in os.listdir(d) if f.startswith(prefix)), key=lambda f: int(f[len(prefix):-3]))
        for k, f in enumerate(files):
            name, arr, dt = load_tensor(os.path.join(d, f))
            name = name or names[k]
            if dt == "UINT16" and name in bf16:
                dt = "BF16"  # onnx 1.12 wrote bfloat16 test data as uint16 bit patterns
            into.append((name, arr, dt))
    return ins, outs


def decode_raw(raw, datatype, shape):
    if datatype == "BF16":
        return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
    return from_raw(raw, datatype, shape)


def compare(expected, got):
    name, exp, dt = expected
    if dt == "BF16":
        exp = (exp.astype(np.uint32) << 16).view(np.float32)
    if got is None:
        return f"output '{name}' missing"
    if tuple(got.shape) != tuple(exp.shape):
        return f"output '{name}' shape {list(got.shape)} != expected {list(exp.shape)}"
    if exp.dtype == np.object_:
        return None if list(got.reshape(-1)) == list(exp.reshape(-1)) else f"output '{name}' strings differ"
    if exp.dtype == np.bool_ or exp.dtype.kind in "iu":
        return None if np.array_equal(got.astype(exp.dtype), exp) else f"output '{name}' values differ"
    try:
        np.testing.assert_allclose(got.astype(np.float64), exp.astype(np.float64), rtol=1e-3, atol=1e-7, equal_nan=True)
    except AssertionError as e:
        return f"output '{name}' values differ: " + str(e).strip().splitlines()[3 if len(str(e).splitlines()) > 3 else -1].strip()
    return None


def json_safe(ins):
    for _, arr, dt in ins:
        if dt == "BF16":
            return False
        if arr.dtype == np.object_:
            try:
                [x.decode("utf-8") for x in arr.reshape(-1)]
            except UnicodeDecodeError:
                return False
        elif arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            return False
    return True


def infer_http_json(agent, model, ins, out_names):
    req = {"inputs": [{"name": n, "datatype": dt, "shape": list(a.shape),
                       "data": [x.decode() for x in a.reshape(-1)] if a.dtype == np.object_ else a.reshape(-1).tolist()}
                      for n, a, dt in ins],
           "outputs": [{"name": o} for o in out_names]}
    status, _, body = agent.request("POST", f"/v2/models/{model}/infer", json.dumps(req))
    res = json.loads(body)
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {res.get('error')}")
    out = {}
    for o in res["outputs"]:
        if o["datatype"] == "BYTES":
            out[o["name"]] = np.array([s.encode() for s in o["data"]], dtype=np.object_).reshape(o["shape"])
        else:
            out[o["name"]] = np.array(o["data"], dtype=np.float64 if o["datatype"] in ("FP16", "BF16") else
                                      KSERVE_TO_NP[o["datatype"]]).reshape(o["shape"])
    return out


def infer_http_binary(agent, model, ins, out_names):
    header = {"inputs": [], "outputs": [{"name": o, "parameters": {"binary_data": True}} for o in out_names]}
    blobs = []
    for n, a, dt in ins:
        raw = to_raw(a)
        blobs.append(raw)
        header["inputs"].append({"name": n, "datatype": dt, "shape": list(a.shape),
                                 "parameters": {"binary_data_size": len(raw)}})
    h = json.dumps(header).encode()
    status, headers, body = agent.request("POST", f"/v2/models/{model}/infer", h + b"".join(blobs),
                                          {"Inference-Header-Content-Length": str(len(h))})
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {json.loads(body).get('error')}")
    hl = int(headers["Inference-Header-Content-Length"])
    meta, pos, out = json.loads(body[:hl]), hl, {}
    for o in meta["outputs"]:
        size = o["parameters"]["binary_data_size"]
        out[o["name"]] = decode_raw(body[pos:pos + size], o["datatype"], o["shape"])
        pos += size
    return out


def infer_grpc(agent, model, ins, out_names):
    stub, pb2 = agent.grpc()
    req = pb2.ModelInferRequest(model_name=model)
    for n, a, dt in ins:
        req.inputs.add(name=n, datatype=dt, shape=list(a.shape))
        req.raw_input_contents.append(to_raw(a))
    for o in out_names:
        req.outputs.add(name=o)
    try:
        res = stub.ModelInfer(req, timeout=120)
    except grpc.RpcError as e:
        raise RuntimeError(f"gRPC {e.code().name}: {e.details()}")
    return {o.name: decode_raw(res.raw_output_contents[i], o.datatype, list(o.shape)) for i, o in enumerate(res.outputs)}


RUNNERS = {"http-json": infer_http_json, "http-binary": infer_http_binary, "grpc": infer_grpc}


def run_chunk(cases, results):
    repo = tempfile.mkdtemp(prefix="outpost-conformance-")
    names = {}
    for cat, name, d, _ in cases:
        model = f"{cat}.{name}"
        names[(cat, name)] = model
        os.makedirs(os.path.join(repo, model, "1"))
        shutil.copy(os.path.join(d, "model.onnx"), os.path.join(repo, model, "1", "model.onnx"))
    agent = Agent(repo, ["--repository-poll-secs", "0", "--max-request-bytes", str(256 << 20)])
    try:
        index = {e["name"]: e for e in agent.get_json("/v2/repository/index")[1]}
        for cat, name, d, sets in cases:
            model = names[(cat, name)]
            entry = index.get(model, {})
            key = f"{cat}/{name}"
            if entry.get("state") != "READY":
                for p in PROTOCOLS:
                    reason = entry.get("reason", "not in index").replace(os.path.join(repo, model, "1") + "/", "")
                    results[key][p] = "load: " + " ".join(reason.split())
                continue
            in_names, out_names, bf16 = graph_io(os.path.join(d, "model.onnx"))
            for p in PROTOCOLS:
                results[key][p] = None
            for ds in sets:
                try:
                    ins, outs = read_set(d, ds, in_names, out_names, bf16)
                except Exception as e:  # sequence/optional test data that is not a TensorProto
                    for p in PROTOCOLS:
                        results[key][p] = results[key][p] or f"test data: {e}"
                    continue
                for p in PROTOCOLS:
                    if results[key][p]:
                        continue
                    if p == "http-json" and not json_safe(ins):
                        results[key][p] = "skip: inputs JSON cannot carry (NaN/Inf, BF16 or non-UTF-8 bytes)"
                        continue
                    try:
                        got = RUNNERS[p](agent, model, ins, [o[0] for o in outs])
                        for exp in outs:
                            err = compare(exp, got.get(exp[0]))
                            if err:
                                results[key][p] = f"{ds}: {err}"
                                break
                    except Exception as e:
                        results[key][p] = f"{ds}: {e}"
    finally:
        rc = agent.close()
        shutil.rmtree(repo)
        if rc != 0:
            raise RuntimeError(f"outpostd exited with {rc} (crash?) while running {cases[0][1]}..{cases[-1][1]}")


def load_expected(path):
    """case -> (protocols it fails on, a text each failure contains, cause)."""
    expected = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if line and not line.startswith("#"):
                    key, protocols, match, cause = line.split("  ", 3)
                    listed = set(PROTOCOLS) if protocols == "all" else set(protocols.split(","))
                    expected[key.strip()] = (listed, match, cause.strip())
    return expected


def check_case(key, res, expected):
    """Why a case's results disagree with the expected list, or None when they agree."""
    failing = {p: r for p, r in res.items() if r is not None and not r.startswith("skip:")}
    if key not in expected:
        if not failing:
            return None
        causes = sorted(set(failing.values()))
        return (causes[0] if len(causes) == 1 and len(failing) == len(PROTOCOLS)
                else "; ".join(f"{p}: {r}" for p, r in failing.items()))
    protocols, match, _ = expected[key]
    if set(failing) != protocols:
        return (f"fails on {sorted(failing) or 'no protocol'}, listed for {sorted(protocols)}: "
                + "; ".join(f"{p}: {r}" for p, r in failing.items()))
    other = {p: r for p, r in failing.items() if match not in r}
    if other:
        return f"fails for another reason than '{match}': " + "; ".join(f"{p}: {r}" for p, r in other.items())
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--categories", nargs="*", default=CATEGORIES)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--chunk", type=int, default=250)
    ap.add_argument("--expected", default=os.path.join(os.path.dirname(__file__), "conformance_expected.txt"))
    ap.add_argument("--report", help="write the full results as JSON here")
    args = ap.parse_args()
    cases = collect(args.categories, args.only)
    results = defaultdict(dict)
    start = time.time()
    for i in range(0, len(cases), args.chunk):
        run_chunk(cases[i:i + args.chunk], results)
    expected = load_expected(args.expected)
    print(f"{'category':20} {'cases':>6} " + " ".join(f"{p:>12}" for p in PROTOCOLS))
    by_cat = defaultdict(list)
    for key in results:
        by_cat[key.split("/")[0]].append(key)
    for cat in args.categories:
        keys = by_cat.get(cat, [])
        passed = [sum(1 for k in keys if results[k][p] is None) for p in PROTOCOLS]
        print(f"{cat:20} {len(keys):6d} " + " ".join(f"{n:12d}" for n in passed))
    unexpected, stale = [], []
    for key, res in sorted(results.items()):
        failing = {p: r for p, r in res.items() if r is not None and not r.startswith("skip:")}
        if not failing and key in expected:
            stale.append(key)
            continue
        why = check_case(key, res, expected)
        if why:
            unexpected.append(f"{key}  {why}")
    failing = sum(1 for r in results.values()
                  if any(v is not None and not v.startswith("skip:") for v in r.values()))
    print(f"\n{len(results)} cases in {time.time() - start:.0f} s; {failing} fail on some protocol, "
          f"{failing - len(unexpected)} of them as listed in {os.path.basename(args.expected)}")
    if args.report:
        with open(args.report, "w") as f:
            json.dump(results, f, indent=1, sort_keys=True)
    for u in unexpected:
        print("UNEXPECTED FAILURE", u)
    for s in stale:
        print("NOW PASSES (remove from the expected list)", s)
    ok = not unexpected and (not stale or args.only)
    # A case skipped on a protocol (JSON cannot carry its inputs) did not conform there.
    everywhere = sum(1 for r in results.values() if all(v is None for v in r.values()))
    skipped = sum(1 for r in results.values()
                  if any(v is not None and v.startswith("skip:") for v in r.values())
                  and all(v is None or v.startswith("skip:") for v in r.values()))
    print(f"conformance: {everywhere} cases conform on every protocol, {skipped} more on every "
          f"protocol that can carry their inputs (skipped on http-json), "
          f"{len(results) - everywhere - skipped - len(unexpected)} fail for a listed cause on the listed protocols, "
          f"{len(unexpected)} fail unexpectedly, {len(stale)} listed cases now pass")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
