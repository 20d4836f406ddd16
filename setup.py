"""Compiles the per-record hot paths with mypyc; everything else is plain Python.

The compiled modules are the same typed Python files (checked by mypy like the rest). Where no
C compiler is available the build still succeeds (the extensions are optional) and the modules
run as plain Python: correct, only slower.
"""

from __future__ import annotations

from setuptools import setup

# Per-record code of replay and delivery (see each module's docstring for why it is hot).
COMPILED = ["schemas/transcode.py"]

try:
    from mypyc.build import mypycify
except ImportError:  # building without mypy: plain Python
    extensions = []
else:
    extensions = mypycify(COMPILED, opt_level="3")
    for extension in extensions:
        extension.optional = True

setup(ext_modules=extensions)
