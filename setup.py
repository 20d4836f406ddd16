"""Compiles the per-record hot paths with mypyc; everything else is plain Python.

The compiled modules are the same typed Python files (checked by mypy like the rest). Where no
C compiler is available the build still succeeds (the extensions are optional) and the modules
run as plain Python: correct, only slower.
"""

from __future__ import annotations

from setuptools import setup

# Per-record code of replay and delivery (see each module's docstring for why it is hot), and
# the wire-format primitives they call: compiled together, one module calls another natively.
COMPILED = [
    "schemas/wire.py",
    "schemas/transcode.py",
    "schemas/attempt_records.py",
    # The trace exporter's OTLP encoder, per span: 6 µs as Python, 3.3 compiled (docstring),
    # and the delivery attempt's lean span, made and encoded per attempt.
    "plumbing/lean_spans.py",
    "plumbing/otlp_encoding.py",
]
# One shared library for the group, schemas/native__mypyc.*.so (each module gets a small shim of
# its own): without a name, mypyc would name it after a hash of the module list and put it at the
# top level of the install, outside our packages. Known wrinkle of a library inside
# the package: a module first imported natively by another (wire, by transcode) reports a
# __file__ of schemas/schemas/wire...so; nothing here reads it.
GROUP = "schemas.native"

try:
    from mypyc.build import mypycify
except ImportError:  # building without mypy: plain Python
    extensions = []
else:
    extensions = mypycify(COMPILED, opt_level="3", group_name=GROUP)
    for extension in extensions:
        extension.optional = True

setup(ext_modules=extensions)
