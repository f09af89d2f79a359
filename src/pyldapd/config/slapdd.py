"""slapd.d directories: load one into a ServerConfig, convert a slapd.conf into one, or write a fresh install."""

from __future__ import annotations

import os
from pathlib import Path

from pyldapd.config.cnconfig import config_from_entries, entries_from_config, read_slapd_d, write_slapd_d
from pyldapd.config.model import DatabaseConfig, ServerConfig
from pyldapd.config.slapdconf import load_slapd_conf


def load_slapd_d(directory: str) -> ServerConfig:
    return config_from_entries(read_slapd_d(directory))


def convert_slapd_conf(config_file: str, directory: str) -> None:
    """slaptest -f slapd.conf -F DIR: the same configuration as cn=config entries in DIR."""
    target = Path(directory)
    if target.exists() and any(target.iterdir()):
        raise ValueError(f"{directory}: not empty (slaptest converts into an empty directory)")
    write_slapd_d(target, entries_from_config(load_slapd_conf(config_file)))


def init_config(suffix: str, rootdn: str, rootpw: bytes, db_type: str, data_directory: str) -> ServerConfig:
    """The configuration of a fresh install, as Debian's slapd package makes it (database {2} holds the data)."""
    database = DatabaseConfig(type="mdb", declared_type=db_type, suffixes=[suffix], rootdn=rootdn, rootpw=rootpw,
                              directory=os.path.abspath(data_directory), maxsize=1 << 30)  # fmt: skip
    database.indexes = {
        "objectClass": {"eq"},
        "entryUUID": {"eq"},
        "entryCSN": {"eq"},
        "uid": {"eq", "pres", "sub"},
        "cn": {"eq", "pres", "sub"},
        "uidNumber": {"eq"},
        "gidNumber": {"eq"},
        "member": {"eq"},
        "memberUid": {"eq"},
    }
    return ServerConfig(loglevel=256, databases=[database])
