"""Validates bodies against a schema of the OpenAI OpenAPI document.

The full document lives in the workspace's shared/specs; specs/openai-chat-schemas.json holds
the schemas the tests use (and all they reference), extracted unchanged, so that a clone alone
can run the tests. OpenAPI 3.0's `nullable: true` is not JSON Schema: it becomes "or null".
"""
import copy
import json
import os

import jsonschema

HERE = os.path.dirname(os.path.abspath(__file__))
FULL_SPEC = os.path.join(HERE, "../../../shared/specs/openai-openapi.json")
SPEC_PATH = os.environ.get("OUTPOST_OPENAI_SPEC", FULL_SPEC if os.path.exists(FULL_SPEC) else
                           os.path.join(HERE, "specs/openai-chat-schemas.json"))


def _denull(node):
    if isinstance(node, dict):
        node = {k: _denull(v) for k, v in node.items()}
        if node.pop("nullable", False):
            node = {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_denull(v) for v in node]
    return node


class OpenAiSchemas:
    def __init__(self, path=SPEC_PATH):
        with open(path) as f:
            spec = json.load(f)
        self.doc = {"components": {"schemas": _denull(copy.deepcopy(spec["components"]["schemas"]))}}

    def validate(self, body, name):
        """Raises jsonschema.ValidationError when `body` is not a valid `name`."""
        schema = {"$ref": f"#/components/schemas/{name}", **self.doc}
        jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)

