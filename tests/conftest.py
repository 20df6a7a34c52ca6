"""Shared test setup.

hypothesis is imported here, at collection, on purpose: when only integration tests run, its
pytest plugin imports it lazily in the terminal summary, and on CPython 3.11.7 that late import
failed with "SystemError: AST constructor recursion depth mismatch".
"""

import hypothesis  # noqa: F401
