"""The fast tier: tests that need neither root, nor vcsim, nor test guests.

`scripts/test tests/unit` is the loop to run while changing code (see
docs/testing.md). To keep it fast and runnable by any user, a test here that
asks for a testbed fixture is refused when the session is collected, before
any test runs: such a test belongs in tests/collection, tests/playbooks,
tests/provider or tests/testbed.
"""

from pathlib import Path

import pytest

UNIT_TIER = Path(__file__).parent
# The fixtures of tests/conftest.py that start vcsim, test guests, or check for root and the testbed's tools.
TESTBED_FIXTURES = ("testbed_prerequisites", "vcsim", "guest_simulator", "service_instance", "test_ova",
                    "deploy_test_vm")


def pytest_collection_modifyitems(session, config, items):
    misplaced = sorted("%s uses %s" % (item.nodeid, ", ".join(sorted(set(item.fixturenames) & set(TESTBED_FIXTURES))))
                       for item in items
                       if Path(str(item.path)).is_relative_to(UNIT_TIER) and set(item.fixturenames) & set(TESTBED_FIXTURES))
    if misplaced:
        raise pytest.UsageError(
            "tests/unit is the fast tier, without root, vcsim or test guests; move these tests to the tier of the "
            "testbed they need (tests/collection, tests/playbooks, tests/provider or tests/testbed): "
            + "; ".join(misplaced))


@pytest.fixture(autouse=True)
def no_testbed_started_by_hand(monkeypatch):
    """The same refusal for a test that starts a vcsim or guests itself rather than through a fixture."""
    from testbed import simulator
    from testbed.guests import GuestNetwork, GuestSimulator

    def refuse(what):
        def start(*args, **kwargs):
            pytest.fail(f"tests/unit is the fast tier: it starts no {what}; move this test to the testbed's tiers",
                        pytrace=False)
        return start

    monkeypatch.setattr(simulator.Vcsim, "start", refuse("vcsim"))
    monkeypatch.setattr(GuestSimulator, "start", refuse("test guests"))
    monkeypatch.setattr(GuestNetwork, "up", refuse("guest network"))
