"""Shared test setup.

hypothesis and its internal modules are imported here, at collection, on purpose. pytest
rewrites the asserts of plugin modules (hypothesis is one) as they are imported; hypothesis
imports some of its modules lazily (the shrinker's optimiser, for one) deep inside a test's
stack, and on CPython 3.11.7 compiling a module there failed with "SystemError: AST
constructor recursion depth mismatch" (seen in test_byte_size_round_trip after the
integration tests). Imported here, at a shallow stack, they are compiled once and cached.
"""

import importlib
import pkgutil

import hypothesis  # noqa: F401 - the plugin itself, imported early too
import hypothesis.internal.conjecture as conjecture

# exchsim before anything that imports cryptography (trustme, in many test modules): importing
# the package is what loads the TLS groups into cryptography's OpenSSL (exchsim/__init__.py).
import exchsim  # noqa: F401


def _import_hypothesis_internals() -> None:
    # The engine's modules (shrinker, optimiser, ...): what runs inside a failing or
    # optimising test. Not the strategies, some of which load data when imported.
    for module in pkgutil.walk_packages(conjecture.__path__, "hypothesis.internal.conjecture."):
        try:
            importlib.import_module(module.name)
        except ImportError:
            continue


_import_hypothesis_internals()
