"""A search's work that cannot be cut in steps goes to a thread (server/steps.py): the engine yields an Offload,
the network front end runs it off the event loop. Here, at the engine level, for a long attribute list."""

from __future__ import annotations

from pyldapd.model.filter import Present
from pyldapd.protocol import ldap
from pyldapd.server.steps import LARGE_ATTRIBUTE_LIST, Offload, run_steps
from tests.unit.test_replication_logic import SUFFIX, make_directory, populate, root


def test_a_long_attribute_list_is_made_into_a_selection_on_a_thread(tmp_path) -> None:
    """60,000 attribute descriptions (an anonymous client's 256 KB) cost 30 ms to look up: an Offload, first
    thing, then the search as with a short list; a short list yields nothing before its entries."""
    directory = make_directory(tmp_path, "p", 1, syncprov=False)
    populate(directory)
    session = root(directory)
    long_list = ["cn", "uid"] + [f"x-unknown-{i}" for i in range(LARGE_ATTRIBUTE_LIST)]
    sent: list[bytes] = []
    request = ldap.SearchRequest(
        f"uid=a,ou=People,{SUFFIX}", 0, 0, 0, 0, False, Present("objectClass"), long_list
    )
    steps = directory.search_steps(session, 2, request, [], sent.append)
    first = next(steps)
    assert isinstance(first, Offload) and not sent
    selection = first.work()
    try:
        steps.send(selection)
        raise AssertionError("a base search of one entry yielded again")
    except StopIteration as done:
        count, _controls, _text = done.value
    assert count == 1 and len(sent) == 1
    entry = ldap.decode_message(sent[0]).op
    assert {name.lower() for name, _ in entry.attributes} == {"uid"}
    short = ldap.SearchRequest(
        f"uid=a,ou=People,{SUFFIX}", 0, 0, 0, 0, False, Present("objectClass"), ["uid"]
    )
    assert run_steps(directory.search_steps(session, 3, short, [], sent.append))[0] == 1
    assert ldap.decode_message(sent[0]).op.attributes == ldap.decode_message(sent[1]).op.attributes
    directory.close()


def test_search_plans_are_kept_for_small_requests_only(tmp_path) -> None:
    """A plan's key holds the request's base and attribute list: kept when they are small (the common search),
    not for a long list or long descriptions, so no client's requests make the plans hold much; the plans are
    at most SEARCH_PLANS_MOST, and a plan serves the next search alike with the same answer."""
    from pyldapd.server.directory import PLAN_KEY_MOST, SEARCH_PLANS_MOST

    directory = make_directory(tmp_path, "p", 1, syncprov=False)
    populate(directory)
    session = root(directory)
    base = f"uid=a,ou=People,{SUFFIX}"

    def search(attributes: list[str]) -> list[bytes]:
        sent: list[bytes] = []
        request = ldap.SearchRequest(base, 0, 0, 0, 0, False, Present("objectClass"), attributes)
        assert run_steps(directory.search_steps(session, 2, request, [], sent.append))[0] == 1
        return sent

    first = search(["uid"])
    assert len(directory.search_plans) == 1
    assert search(["uid"]) == first  # from the plan
    search([f"x{i}" for i in range(65)])  # more attributes than a plan keeps
    search(["x" * PLAN_KEY_MOST])  # a description too long for one
    assert len(directory.search_plans) == 1
    for i in range(SEARCH_PLANS_MOST + 5):
        search([f"x{i}"])
    assert 1 <= len(directory.search_plans) <= SEARCH_PLANS_MOST
    directory.close()
