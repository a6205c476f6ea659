#!/usr/bin/python3
"""python-memstore: Prism's in-memory plugin in Python (see README.md).

Run it through a host: prism-accept --plugin backends/python-memstore/plugin.py
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import prismkit  # noqa: E402  (puts gen/ on sys.path)
from memstore import MemStore  # noqa: E402

if __name__ == "__main__":
    prismkit.serve(MemStore())
