#!/usr/bin/env python3
"""Check the manifests of deploy/: every file parses, every object is named, every worker names
its queues, and every ScaledObject scales an existing worker from a source that matches its
queue. Run: python3 deploy/check.py (needs PyYAML)."""

import pathlib
import re
import sys

import yaml

here = pathlib.Path(__file__).parent
docs = []
for path in sorted(here.glob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is None:
            continue
        for field in ("apiVersion", "kind", "metadata"):
            assert field in doc, f"{path.name}: an object without {field}"
        assert doc["metadata"].get("name"), f"{path.name}: a {doc['kind']} without a name"
        docs.append((path.name, doc))

deployments = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "Deployment"}
queues = {}
for name, d in deployments.items():
    container = d["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    labels = d["spec"]["template"]["metadata"]["labels"]
    selector = d["spec"]["selector"]["matchLabels"]
    assert all(labels.get(k) == v for k, v in selector.items()), f"{name}: selector misses its pods"
    if args[0] == "worker":
        assert "--queues" in args, f"{name}: a worker without --queues"
        queues[name] = args[args.index("--queues") + 1].split(",")

scaled = [d for _, d in docs if d["kind"] == "ScaledObject"]
assert scaled, "no ScaledObject"
auths = {d["metadata"]["name"] for _, d in docs if d["kind"] == "TriggerAuthentication"}
for so in scaled:
    target = so["spec"]["scaleTargetRef"]["name"]
    assert target in queues, f"ScaledObject {so['metadata']['name']}: no worker {target}"
    for trigger in so["spec"]["triggers"]:
        meta = trigger["metadata"]
        if trigger["type"] == "metrics-api":
            m = re.fullmatch(r"pools\.([\w-]+)\.desired_replicas", meta["valueLocation"])
            assert m and m.group(1) in queues[target], f"{target}: valueLocation {meta['valueLocation']}"
            assert meta["url"].endswith("/v1/scaling")
        elif trigger["type"] == "postgresql":
            m = re.search(r"FROM wedsync_scaling WHERE queue = '([\w-]+)'", meta["query"])
            assert m and m.group(1) in queues[target], f"{target}: query {meta['query']}"
        else:
            raise AssertionError(f"{target}: unexpected trigger {trigger['type']}")
        ref = trigger.get("authenticationRef", {}).get("name")
        assert ref is None or ref in auths, f"{target}: no TriggerAuthentication {ref}"

print(f"deploy/: {len(docs)} objects in {len({p for p, _ in docs})} files OK; "
      f"{len(scaled)} ScaledObjects over {len(queues)} worker Deployments")
sys.exit(0)
