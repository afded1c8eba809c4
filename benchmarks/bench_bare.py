"""Sanity benchmark: the bare trivial route against itself (the harness's noise floor).

Run: ``.venv/bin/python benchmarks/bench_bare.py``
"""

from __future__ import annotations

from _harness import bench, http_scope, print_table, trivial_app

if __name__ == "__main__":
    app = trivial_app()
    scope = http_scope("/")
    print_table(bench({"bare": (app, lambda i: scope), "bare (again)": (app, lambda i: scope)}))
