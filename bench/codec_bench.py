"""Micro-benchmark of the protocol codec (not a test): prints operations per second for the hot paths.

PYTHONPATH=src python bench/codec_bench.py [seconds-per-case]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from pyldapd.model.filter import And, Equality, Present, Substrings
from pyldapd.protocol.ldap import (
    SEARCH_RESULT_DONE,
    BindRequest,
    Control,
    LDAPMessage,
    MessageFramer,
    SearchRequest,
    SearchResultEntry,
    decode_message,
    decode_partial_attribute_list,
    encode_message,
    encode_partial_attribute_list,
    encode_result,
    encode_search_result_entry,
)

ENTRY = [
    ("objectClass", [b"top", b"person", b"organizationalPerson", b"inetOrgPerson"]),
    ("uid", [b"user.12345"]),
    ("cn", [b"Aaren Atp"]),
    ("sn", [b"Atp"]),
    ("givenName", [b"Aaren"]),
    ("mail", [b"user.12345@example.com"]),
    ("telephoneNumber", [b"+1 685 622 6202"]),
    ("description", [b"This is the description for Aaren Atp."]),
    ("entryUUID", [b"0f8e6a4c-1d2b-4c3d-9e8f-0123456789ab"]),
    ("entryCSN", [b"20261122155918.338377Z#000000#001#000000"]),
]


def bench(name: str, fn: Callable[[], object], seconds: float) -> None:
    n = 0
    batch = 1000
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn()
        n += batch
        now = time.perf_counter()
        if now >= deadline:
            break
    rate = n / (now - start)
    print(f"{name:<52} {rate:>12,.0f} /s  {1e6 / rate:8.2f} us")


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    bind = encode_message(LDAPMessage(1, BindRequest(3, "cn=Directory Manager,dc=example,dc=com", b"secret")))
    search = encode_message(
        LDAPMessage(
            2,
            SearchRequest(
                "dc=example,dc=com", 2, 0, 0, 0, False, Equality("uid", b"user.12345"), ["cn", "mail"]
            ),
        )
    )
    complex_search = encode_message(
        LDAPMessage(
            3,
            SearchRequest(
                "ou=people,dc=example,dc=com",
                2,
                0,
                500,
                30,
                False,
                And((Present("objectClass"), Substrings("cn", b"Aa", (b"r",), b"p"), Equality("sn", b"Atp"))),
                ["cn", "sn", "mail", "+"],
            ),
            [Control("1.2.840.113556.1.4.319", False, b"\x30\x05\x02\x01\x64\x04\x00")],
        )
    )
    blob = encode_partial_attribute_list(ENTRY)
    entry_pdu = encode_search_result_entry(2, "uid=user.12345,ou=people,dc=example,dc=com", blob)
    entry_msg = LDAPMessage(2, SearchResultEntry("uid=user.12345,ou=people,dc=example,dc=com", ENTRY))
    stream = search * 100

    print(
        f"PDU sizes: bind {len(bind)}, search {len(search)}, complex search {len(complex_search)}, entry {len(entry_pdu)}"
    )
    bench("decode_message(BindRequest)", lambda: decode_message(bind), seconds)
    bench("decode_message(SearchRequest, equality)", lambda: decode_message(search), seconds)
    bench(
        "decode_message(SearchRequest, and+substr+control)", lambda: decode_message(complex_search), seconds
    )
    bench("decode_message(SearchResultEntry, 10 attrs)", lambda: decode_message(entry_pdu), seconds)
    bench("decode_partial_attribute_list(10 attrs)", lambda: decode_partial_attribute_list(blob), seconds)
    bench(
        "encode_search_result_entry(blob)",
        lambda: encode_search_result_entry(2, "uid=user.12345,ou=people,dc=example,dc=com", blob),
        seconds,
    )
    bench("encode_partial_attribute_list(10 attrs)", lambda: encode_partial_attribute_list(ENTRY), seconds)
    bench("encode_message(SearchResultEntry, 10 attrs)", lambda: encode_message(entry_msg), seconds)
    bench("encode_result(SearchResultDone)", lambda: encode_result(2, SEARCH_RESULT_DONE, 0), seconds)
    bench("encode_message(SearchRequest)", lambda: encode_message(decode_message(search)), seconds)

    def frame_100() -> None:
        MessageFramer().feed(stream)

    bench("MessageFramer.feed(100 search PDUs) [per call]", frame_100, seconds)


if __name__ == "__main__":
    main()
