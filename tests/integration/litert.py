"""Google's TensorFlow Lite interpreter as the reference for imported models: LiteRT.js run in Node
by litert_reference.mjs. What it does not do (resizing a dynamic input) is done to the file."""
import base64
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_MODULES = os.environ.get("OUTPOST_NODE_MODULES", "")
SCHEMA = os.environ.get("OUTPOST_TFLITE_SCHEMA", "")


def available():
    return bool(NODE_MODULES and os.path.isdir(os.path.join(NODE_MODULES, "@litertjs", "core"))
                and SCHEMA and os.path.exists(SCHEMA) and shutil.which("flatc") and shutil.which("node"))


def with_static_shapes(model, inputs, outputs, out_dir):
    """A copy of `model` whose main subgraph's inputs and outputs have the given shapes.

    LiteRT.js has no ResizeInputTensor, and sizes its output buffers from the file; this is what
    resizing does in the TFLite interpreter (the operators' Prepare recomputes every tensor in
    between). flatc's JSON round trip keeps every other byte of meaning."""
    subprocess.run(["flatc", "--json", "--strict-json", "--raw-binary", "-o", out_dir, SCHEMA, "--", model],
                   check=True)
    stem = os.path.splitext(os.path.basename(model))[0]
    doc_path = os.path.join(out_dir, stem + ".json")
    with open(doc_path) as f:
        doc = json.load(f)
    graph = doc["subgraphs"][0]
    for indices, shapes in ((graph["inputs"], inputs), (graph["outputs"], outputs)):
        for index, shape in zip(indices, shapes):
            graph["tensors"][index]["shape"] = list(shape)
            graph["tensors"][index]["shape_signature"] = list(shape)
    with open(doc_path, "w") as f:
        json.dump(doc, f)
    subprocess.run(["flatc", "-b", "-o", out_dir, SCHEMA, doc_path], check=True)
    os.remove(doc_path)
    return os.path.join(out_dir, stem + ".tflite")


def run(jobs):
    """jobs: [(model path, [float32 arrays in input order])] -> for each, [(output name, array)]."""
    request = {"jobs": [{"model": model, "inputs": [
        {"shape": list(x.shape), "data": base64.b64encode(np.ascontiguousarray(x, "<f4").tobytes()).decode()}
        for x in inputs]} for model, inputs in jobs]}
    with tempfile.TemporaryDirectory(prefix="outpost-litert-") as tmp:
        req, resp = os.path.join(tmp, "request.json"), os.path.join(tmp, "response.json")
        with open(req, "w") as f:
            json.dump(request, f)
        done = subprocess.run(["node", os.path.join(HERE, "litert_reference.mjs"), NODE_MODULES, req, resp],
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"LiteRT.js failed ({done.returncode}): {done.stderr[-2000:]}")
        with open(resp) as f:
            results = json.load(f)["results"]
    return [[(o["name"], np.frombuffer(base64.b64decode(o["data"]), "<f4").reshape(o["shape"]))
             for o in r["outputs"]] for r in results]
