#!/usr/bin/env python3
"""Combines the JSON of one `compare` run into the side-by-side table (Markdown) with ratios."""
import json
import os
import sys

d = sys.argv[1]
load = lambda name: json.load(open(os.path.join(d, name)))
y, crdt, sync, gossip = load("pycrdt.json"), load("kith-crdt.json"), load("kith-sync.json"), load("kith-gossip.json")
n = y["contacts"]
delta_k = max(gossip["deltaWireBytesEachWay"]["oneChangePerEdit"])
delta_y = max(y["deltaBytesEachWay"])
# The replica's change log shares the input buffers (allocated before the RSS baseline): add it.
kith_mem = crdt["replicaRSSBytesPerContact"] + crdt["encodedBytes"] / n
rows = [
    ("build the map (Kith: author and sign changes)", f'{crdt["authorSeconds"]:.2f} s', f'{y["buildSeconds"]:.2f} s', "", ""),
    ("full state, bytes", f'{crdt["encodedBytes"] / 1e6:.1f} MB', f'{y["stateBytes"] / 1e6:.1f} MB',
     f'{crdt["encodedBytes"] / y["stateBytes"]:.2f}×', ""),
    ("apply full state in memory (Kith: signatures verified)", f'{crdt["applyVerifiedSeconds"]:.2f} s', f'{y["applySeconds"]:.2f} s',
     f'Yrs/Kith {y["applySeconds"] / crdt["applyVerifiedSeconds"]:.1f}×', "≥ 2×"),
    ("Kith full sync over loopback (Noise, verify, decrypt, durable) vs Yrs in-memory apply",
     f'{sync["initialSyncSeconds"]:.2f} s', f'{y["applySeconds"]:.2f} s',
     f'Kith/Yrs {sync["initialSyncSeconds"] / y["applySeconds"]:.2f}', "≤ 1"),
    (f'{y["concurrentEdits"]} concurrent edits per side, delta bytes each way (Kith: one signed change per edit, wire bytes)',
     f'{delta_k / 1e3:.1f} KB', f'{delta_y / 1e3:.1f} KB', f'Kith/Yrs {delta_k / delta_y:.2f}', "≤ 1.2"),
    (f'merge that delta, both directions, into replicas of {gossip.get("mergeReplicaContacts", y["concurrentEdits"])} contacts'
     + (f' (Kith CPU {gossip["mergeCPUSeconds"] * 1e3:.1f} ms)' if "mergeCPUSeconds" in gossip else ""),
     f'{gossip["mergeSeconds"] * 1e3:.1f} ms', f'{y["mergeSeconds"] * 1e3:.1f} ms',
     f'Kith/Yrs {gossip["mergeSeconds"] / y["mergeSeconds"]:.2f}', "≤ 1"),
    ("resident memory per contact after apply (Kith: RSS growth + its change log)", f'{kith_mem:.0f} B',
     f'{y["applyRSSBytesPerContact"]:.0f} B', f'Kith/Yrs {kith_mem / y["applyRSSBytesPerContact"]:.2f}', "≤ 0.25"),
]
print(f'{n} contacts, seed 42; pycrdt {y["version"]}; kith commit {crdt.get("commit", "?")}; {crdt.get("machine", {}).get("cpu", "")}')
print()
print("| measure | Kith | Yrs (pycrdt) | ratio | target |")
print("|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
