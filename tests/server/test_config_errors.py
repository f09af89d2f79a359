"""slapd.conf lines slapd refuses are refused by pyldapd too, at the same file and line (slaptest is the reference)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import SCHEMA_DIR, free_port

SLAPTEST = "/usr/sbin/slaptest"

HEAD = f"""include {SCHEMA_DIR}/core.schema
include {SCHEMA_DIR}/cosine.schema
include {SCHEMA_DIR}/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
suffix "dc=example,dc=com"
rootdn "cn=admin,dc=example,dc=com"
"""

# (case, lines after HEAD; {db} is an existing empty directory, {file} a regular file)
CASES = [
    ("unknown index attribute", "directory {db}\nindex uid,fooBar eq"),
    ("unknown index attribute, default type", "directory {db}\nindex default eq\nindex uid,fooBar"),
    ("no index type and no default", "directory {db}\nindex cn"),
    ("unknown index type", "directory {db}\nindex cn foo"),
    ("approx index without approx rule", "directory {db}\nindex telephoneNumber approx"),
    ("substr index without substr rule", "directory {db}\nindex userPassword sub"),
    ("entryDN index", "directory {db}\nindex entryDN eq"),
    ("duplicate index", "directory {db}\nindex cn eq\nindex sn,cn sub"),
    ("duplicate objectClass index", "directory {db}\nindex objectClass eq\nindex objectClass pres"),
    ("duplicate index by alias", "directory {db}\nindex cn eq\nindex commonName pres"),
    ("directory does not exist", "directory {db}/missing\nindex cn eq"),
    ("directory under a regular file", "directory {file}/sub\nindex cn eq"),
    ("directory is a regular file", "directory {file}\nindex cn eq"),
    ("index before the error", "directory {db}\nindex cn eq\nindex sn approx\nindex mail fooBar"),
    ("readonly with a bad value", "directory {db}\nreadonly maybe"),
    ("suffix served twice", 'directory {db}\ndatabase mdb\nsuffix "DC=Example, dc=com"\ndirectory {db}'),
    ("suffix not a DN", 'directory {db}\ndatabase mdb\nsuffix "not a dn"\ndirectory {db}'),
]

GOOD = [
    ("index default then bare index", "directory {db}\nindex default eq,pres\nindex cn\nindex sn sub"),
    ("approx on directory string and IA5", "directory {db}\nindex cn,mail approx\nindex uid eq,pres,sub"),
]


def write_case(tmp_path: Path, body: str) -> Path:
    db = tmp_path / "db"
    db.mkdir(exist_ok=True)
    regular = tmp_path / "afile"
    regular.write_text("x")
    conf = tmp_path / "slapd.conf"
    conf.write_text(HEAD + body.format(db=db, file=regular) + "\n")
    return conf


def refused_line(output: str, conf: Path) -> int | None:
    match = re.search(re.escape(str(conf)) + r": line (\d+)", output) or re.search(
        r"slapd\.conf: line (\d+)", output
    )
    return int(match.group(1)) if match else None


def slaptest(conf: Path) -> tuple[int, str]:
    result = subprocess.run([SLAPTEST, "-u", "-f", str(conf)], capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout + result.stderr


def pyldapd(*args: str) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-m", "pyldapd.cli.main", *args], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("body", [b for _, b in CASES], ids=[c for c, _ in CASES])
def test_refused_at_the_same_line(tmp_path, body):
    conf = write_case(tmp_path, body)
    code, out = slaptest(conf)
    assert code != 0, out
    line = refused_line(out, conf)
    assert line is not None, out
    code, text = pyldapd("test", "-f", str(conf))
    assert code != 0, text
    assert f"{conf}: line {line}:" in text, (out, text)
    assert "Traceback" not in text
    # serve refuses to start, naming the same line (and is not left running)
    port = free_port()
    code, text = pyldapd("serve", "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/", "-d", "0")
    assert code != 0, text
    assert f"{conf}: line {line}:" in text, (out, text)
    assert "Traceback" not in text
    assert not (tmp_path / "db" / "missing").exists()


@pytest.mark.parametrize("body", [b for _, b in GOOD], ids=[c for c, _ in GOOD])
def test_accepted_like_slapd(tmp_path, body):
    conf = write_case(tmp_path, body)
    code, out = slaptest(conf)
    assert code == 0, out
    code, text = pyldapd("test", "-u", "-f", str(conf))
    assert code == 0, text


def test_messages_name_the_problem(tmp_path):
    """Same words as slapd for the issue's cases."""
    for body, words in [
        ("directory {db}\nindex uid,fooBar eq", 'index attribute "fooBar" undefined'),
        ("directory {db}/missing", "invalid path: No such file or directory"),
        ("directory {file}/sub", "invalid path: Not a directory"),
        ("directory {db}\nindex cn eq\nindex cn pres", 'duplicate index definition for attr "cn"'),
    ]:
        conf = write_case(tmp_path, body)
        assert words in slaptest(conf)[1]
        assert words in pyldapd("test", "-f", str(conf))[1]


def test_unknown_overlay_refused(tmp_path):
    """slapd: 'overlay "foo" not found' (it names no line); pyldapd refuses the same line and names it."""
    conf = write_case(tmp_path, "directory {db}\noverlay foo")
    code, out = slaptest(conf)
    assert code != 0 and 'overlay "foo" not found' in out
    code, text = pyldapd("test", "-u", "-f", str(conf))
    assert code != 0 and f'{conf}: line 10: overlay "foo" not found' in text, text


def test_cn_config_index_values_refused_like_slapd(tmp_path):
    """olcDbIndex values added over cn=config: the same refusals (80) and texts as slapd's."""
    from tests.servers import SLAPD, ldap_tool, start_process

    def start(name: str, argv: list[str], workdir: Path):
        sock = str(workdir / f"{name}.sock")
        port = free_port()
        urls = f"ldap://127.0.0.1:{port}/ ldapi://{sock.replace('/', '%2F')}/"
        return start_process(name, [*argv, "-h", urls], port, sock, workdir, workdir)

    conf = tmp_path / "slapd.conf"
    (tmp_path / "db").mkdir(exist_ok=True)
    conf.write_text(HEAD.replace('database mdb\nsuffix "dc=example,dc=com"\n', "")
                    + "database config\naccess to * by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,"
                    f'cn=auth manage\ndatabase mdb\nsuffix "dc=example,dc=com"\ndirectory {tmp_path / "db"}\n')  # fmt: skip
    theirs_tree = tmp_path / "slapd.d"
    theirs_tree.mkdir()
    subprocess.run([SLAPTEST, "-f", str(conf), "-F", str(theirs_tree)], capture_output=True, timeout=60)
    ours_tree = tmp_path / "ours" / "slapd.d"
    code, text = pyldapd("init", "-F", str(ours_tree), "--suffix", "dc=example,dc=com", "--rootdn",
                         "cn=admin,dc=example,dc=com", "--rootpw", "x")  # fmt: skip
    assert code == 0, text
    servers = []
    try:
        servers.append(start("slapd", [SLAPD, "-F", str(theirs_tree), "-d", "0"], tmp_path))
        servers.append(start("pyldapd", [sys.executable, "-m", "pyldapd.cli.main", "serve", "-F", str(ours_tree),
                                         "-d", "0"], tmp_path / "ours"))  # fmt: skip
        answers = []
        for server, db in zip(servers, ("{1}mdb", "{2}mdb"), strict=True):
            got = []
            for value in ("fooBar eq", "telephoneNumber approx", "userPassword sub", "entryDN eq", "cn foo",
                          "mail approx", "sn eq", "surname pres", "givenName eq,sub,approx"):  # fmt: skip
                change = f"dn: olcDatabase={db},cn=config\nchangetype: modify\nadd: olcDbIndex\nolcDbIndex: {value}\n"
                result = ldap_tool("ldapmodify", "-Y", "EXTERNAL", "-Q", "-H", server.ldapi_url, input=change)
                info = [line.strip() for line in result.stderr.splitlines() if "additional info" in line]
                got.append((value, result.returncode, info))
            answers.append(got)
        assert answers[1] == answers[0]
    finally:
        for server in servers:
            server.stop()
