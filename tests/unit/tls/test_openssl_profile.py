"""The groups reach cryptography's OpenSSL only through exchsim/__init__.py (exchange.md §4.6)."""

from __future__ import annotations

import os
import subprocess
import sys

CHECK = "import exchsim.tls.schannel as s; s.check_groups(); print('in force')"


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env}, check=False)


def test_importing_exchsim_first_puts_windows_groups_in_force() -> None:
    done = _python(CHECK + "; import os; print(os.environ.get('OPENSSL_CONF'))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["in", "force", "None"]  # and the variable is gone again


def test_a_users_openssl_conf_is_given_back() -> None:
    done = _python(CHECK + "; import os; print(os.environ['OPENSSL_CONF'])",
                   OPENSSL_CONF="/nonexistent/user.cnf")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "/nonexistent/user.cnf"


def test_cryptography_imported_before_exchsim_is_refused_loudly() -> None:
    done = _python("import cryptography.x509; " + CHECK)
    assert done.returncode != 0
    assert "the TLS groups of exchsim/tls/openssl.cnf are not in force" in done.stderr
