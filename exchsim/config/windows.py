"""The Windows Server a server runs on, and the domain's LAN Manager authentication level.

Only NTLM shows them on the wire: the CHALLENGE message carries the Windows build of the
server's operating system, and the domain controllers' LAN Manager authentication level decides
which responses a logon may use (exchange.md §1.7.1).
"""

from __future__ import annotations

import enum

__all__ = [
    "DEFAULT_LM_COMPATIBILITY_LEVEL",
    "DEFAULT_OS",
    "SUPPORTED_OS",
    "WindowsServer",
]


class WindowsServer(enum.StrEnum):
    """``Get-ADComputer <server> -Properties OperatingSystem`` without the edition."""

    WS2012R2 = "Windows Server 2012 R2"
    WS2016 = "Windows Server 2016"
    WS2019 = "Windows Server 2019"
    WS2022 = "Windows Server 2022"

    @property
    def build(self) -> tuple[int, int, int]:
        """Major, minor and build number, as the NTLM Version field carries them."""
        return _BUILDS[self]


_BUILDS = {
    WindowsServer.WS2012R2: (6, 3, 9600),
    WindowsServer.WS2016: (10, 0, 14393),
    WindowsServer.WS2019: (10, 0, 17763),
    WindowsServer.WS2022: (10, 0, 20348),
}

# Exchange's supportability matrix (exchange.md §1.7.1): which Windows Server each version runs
# on, among the four above. Windows Server 2022 needs Exchange 2019 CU12 or later (or SE).
SUPPORTED_OS: dict[str, tuple[WindowsServer, ...]] = {
    "15.0": (WindowsServer.WS2012R2,),
    "15.1": (WindowsServer.WS2012R2, WindowsServer.WS2016),
    "15.2": (WindowsServer.WS2019, WindowsServer.WS2022),
}

# A server whose OperatingSystem is not set runs the newest Windows its version was released on.
DEFAULT_OS = {
    "15.0": WindowsServer.WS2012R2,
    "15.1": WindowsServer.WS2016,
    "15.2": WindowsServer.WS2019,
}

# "Send NTLMv2 response only": the effective default of domain controllers and member servers
# since Windows Server 2008 R2; domain controllers then accept LM, NTLM and NTLMv2.
DEFAULT_LM_COMPATIBILITY_LEVEL = 3
