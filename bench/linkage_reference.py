"""The reference side of `bench_linkage.py --reference-python`: clkhash 0.18.3 and anonlink 0.15.3 on the
same work as ours, run by a Python that has them (they pin cryptography < 41 and bitarray < 3, so not
this project's environment; see tests/fixtures/clkhash/make_vectors.py for setting one up).

    REFERENCE_PYTHON bench/linkage_reference.py SCHEMA.json RECORDS.json N  → one JSON line on stdout
"""

import json
import sys
import time
from pathlib import Path

import anonlink
import numpy as np
from bitarray import bitarray
from clkhash.clk import generate_clks
from clkhash.schema import from_json_dict


def main(schema_path: str, records_path: str, n: int) -> None:
    raw = json.loads(Path(schema_path).read_text())
    records = json.loads(Path(records_path).read_text())
    schema = from_json_dict(raw)
    rows = [[r.get(f.identifier, "") for f in schema.fields] for r in records]
    start = time.perf_counter()
    generate_clks(rows, schema, "bench secret")
    encode = len(rows) / (time.perf_counter() - start)
    rng = np.random.default_rng(0)
    sets = []
    for _ in range(2):
        filters = []
        for row in rng.integers(0, 256, (n, 128), dtype=np.uint8):
            ba = bitarray()
            ba.frombytes(row.tobytes())
            filters.append(ba)
        sets.append(filters)
    similarity = anonlink.similarities.dice_coefficient
    start = time.perf_counter()
    anonlink.candidate_generation.find_candidate_pairs(sets, similarity, 0.7)
    dice = n * n / (time.perf_counter() - start)
    print(json.dumps({"clk_per_s": encode, "cmp_per_s": dice}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
