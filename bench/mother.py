"""The published MoTHer steps (arXiv 2405.18432, its official code's choices), for bench/tree-scale.ts.

    python3 bench/mother.py MODEL_DIR [MODEL_DIR ...]

Every model is loaded whole as float32 torch tensors (as the official code loads state dicts),
direction by the excess kurtosis (scipy's default: Fisher, biased) of o_proj summed over layers,
distance the mean over layers of the RMS of the difference of the square attention matrices,
M = D + 0.3 mean(D) T, the minimum spanning arborescence by networkx's Chu-Liu/Edmonds. Prints
one JSON line: seconds, loadSeconds, maxRssKiB, edges. Needs Debian's python3-torch,
python3-scipy and python3-networkx (run with the system python3 that has them).
"""
import json
import os
import re
import resource
import struct
import sys
import time

import networkx as nx
import numpy as np
import scipy.stats
import torch

LAMBDA = 0.3
SQUARE_ATTENTION = re.compile(r"layers\.(\d+)\.self_attn\.(q|k|v|o)_proj\.weight$")
OUTPUT_PROJECTION = re.compile(r"layers\.(\d+)\.self_attn\.o_proj\.weight$")


def load_safetensors(path):
    """Every tensor of a safetensors file (or a folder's model.safetensors) as float32 torch tensors."""
    if os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    state = {}
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        start = 8 + length
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            f.seek(start + begin)
            raw = bytearray(f.read(end - begin))
            # As safetensors' torch loader does: the stored dtype viewed in place, then float32.
            dtype = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}[info["dtype"]]
            state[name] = torch.frombuffer(raw, dtype=dtype).reshape(info["shape"]).float()
    return state


def main(folders):
    started = time.perf_counter()
    models = [load_safetensors(p) for p in folders]
    load_seconds = time.perf_counter() - started
    kurtosis = [
        sum(float(scipy.stats.kurtosis(t.numpy().ravel())) for name, t in m.items() if OUTPUT_PROJECTION.search(name))
        for m in models
    ]
    n = len(models)
    distance = np.zeros((n, n))
    for a in range(n):
        for b in range(a + 1, n):
            per_layer = {}
            for name, x in models[a].items():
                match = SQUARE_ATTENTION.search(name)
                if not match or x.shape[0] != x.shape[1]:
                    continue  # the official code keeps square matrices only
                rms = torch.sqrt(torch.mean((x - models[b][name]) ** 2)).item()
                per_layer.setdefault(match.group(1), []).append(rms)
            distance[a, b] = distance[b, a] = float(np.mean([np.mean(v) for v in per_layer.values()]))
    mean = distance[~np.eye(n, dtype=bool)].mean() if n > 1 else 0.0
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n))
    for a in range(n):
        for b in range(n):
            if a != b:
                against = 1.0 if kurtosis[b] > kurtosis[a] else 0.0
                graph.add_edge(a, b, weight=distance[a, b] + LAMBDA * mean * against)
    tree = nx.minimum_spanning_arborescence(graph) if n > 1 else graph
    names = [os.path.basename(os.path.normpath(p)) for p in folders]
    print(json.dumps({
        "seconds": time.perf_counter() - started,
        "loadSeconds": load_seconds,
        "maxRssKiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "edges": [{"parent": names[a], "child": names[b]} for a, b in tree.edges()],
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
