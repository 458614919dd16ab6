#!/usr/bin/env python3
"""The peer side of `Benchmarks/peers/compare`: the same seeded contacts and the same edits as
kith-bench, through pycrdt (Python bindings of Yrs, the Rust port of Yjs).

Reads the workload written by `kith-bench sample --format jsonl` and prints one JSON object.
A contact is a Map in a top-level Map keyed by the contact id: its fields as strings, its phones,
emails and tags as nested Maps (key -> raw input), as close to Kith's model as Yrs allows.
"""
import json
import sys
import time

from pycrdt import Doc, Map


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def contact_map(c):
    fields = {
        "given_name": c["given"], "family_name": c["family"], "address": c["address"], "city": c["city"],
        "postal_code": c["postal"], "relationship": c["relationship"],
    }
    for key in ("notes", "support", "consent"):
        if c.get(key):
            fields[key] = c[key]
    fields["phones"] = Map({c["phone"]: c["phoneRaw"] if c["phoneRaw"] != c["phone"] else ""})
    fields["emails"] = Map({c["email"]: ""})
    fields["tags"] = Map({t: "" for t in c["tags"]})
    return Map(fields)


def main():
    path, edits = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    with open(path) as f:
        contacts = [json.loads(line) for line in f]

    doc = Doc()
    top = doc.get("contacts", type=Map)
    t = time.perf_counter()
    for start in range(0, len(contacts), 100):  # ~1,000 ops per transaction, like kith-bench's changes
        with doc.transaction():
            for c in contacts[start:start + 100]:
                top[c["id"]] = contact_map(c)
    build = time.perf_counter() - t

    t = time.perf_counter()
    state = doc.get_update()
    encode = time.perf_counter() - t

    before = rss_bytes()
    t = time.perf_counter()
    replica = Doc()
    replica.apply_update(state)
    apply = time.perf_counter() - t
    apply_rss = rss_bytes() - before
    assert len(replica.get("contacts", type=Map)) == len(contacts)
    del doc

    # 1,000 concurrent edits: two replicas of the same state each set the city of the same
    # contacts, one transaction per edit; then each sends the other what it lacks.
    a, b = Doc(), Doc()
    a.apply_update(state)
    b.apply_update(state)
    ma, mb = a.get("contacts", type=Map), b.get("contacts", type=Map)
    for i in range(edits):
        cid = contacts[i]["id"]
        with a.transaction():
            ma[cid]["city"] = f"North {i}"
        with b.transaction():
            mb[cid]["city"] = f"South {i}"
    a_to_b = a.get_update(b.get_state())
    b_to_a = b.get_update(a.get_state())
    t = time.perf_counter()
    b.apply_update(a_to_b)
    a.apply_update(b_to_a)
    merge = time.perf_counter() - t
    assert str(ma[contacts[0]["id"]]["city"]) == str(mb[contacts[0]["id"]]["city"])

    import pycrdt
    print(json.dumps({
        "library": "pycrdt", "version": getattr(pycrdt, "__version__", "?"),
        "contacts": len(contacts), "concurrentEdits": edits,
        "buildSeconds": build, "encodeSeconds": encode, "stateBytes": len(state),
        "applySeconds": apply, "applyRSSBytes": apply_rss, "applyRSSBytesPerContact": apply_rss / len(contacts),
        "deltaBytesEachWay": [len(a_to_b), len(b_to_a)], "mergeSeconds": merge,
    }))


if __name__ == "__main__":
    main()
