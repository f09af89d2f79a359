"""The one exception operation handlers raise to end an operation with an LDAP result."""

from __future__ import annotations

from pyldapd.protocol.ldap import ResultCode


class LDAPError(Exception):
    def __init__(
        self, code: int, message: str = "", matched_dn: str = "", referrals: list[str] | None = None
    ):
        super().__init__(message)
        self.code = int(code)
        self.message = message
        self.matched_dn = matched_dn
        self.referrals = referrals


def protocol_error(message: str) -> LDAPError:
    return LDAPError(ResultCode.protocolError, message)
