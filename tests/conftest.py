import pytest

from tests.servers import slapd_conf, start_pyldapd


@pytest.fixture
def pyldapd(tmp_path):
    """A fresh pyldapd with the standard test config, empty database."""
    server = start_pyldapd(tmp_path / "pyldapd", slapd_conf(tmp_path / "pyldapd" / "db"))
    yield server
    server.stop()
