"""`pyldapd passwd`: slappasswd(8) — hash a secret for userPassword or rootpw, with slappasswd's flags and output."""

from __future__ import annotations

import argparse
import os
import stat
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-s", dest="secret", help="the secret (prompted for when absent)")
    parser.add_argument("-h", dest="scheme", default=None,
                        help="scheme: {SSHA} (default), {SHA}, {SSHA256}, {SSHA512}, {MD5}, {SMD5}, {CRYPT}, "
                             "{PBKDF2-SHA512}, {ARGON2}, {CLEARTEXT}, ...")  # fmt: skip
    parser.add_argument("-T", dest="secret_file", help="hash the contents of this file (all of it)")
    parser.add_argument("-g", dest="generate", action="store_true", help="generate a random password")
    parser.add_argument("-n", dest="no_newline", action="store_true", help="omit the trailing newline")
    parser.add_argument(
        "-c", dest="salt_format", help="crypt(3) salt format, e.g. '$6$%%.16s' (implies {CRYPT})"
    )
    parser.add_argument(
        "-u", dest="userpassword", action="store_true", help="RFC 2307 userPassword (default)"
    )
    parser.add_argument("-v", dest="verbose", action="store_true", help="verbose (accepted)")
    parser.add_argument("-o", dest="options", action="append", default=[],
                        help="option[=value], e.g. module-load=... (accepted; the schemes are built in)")  # fmt: skip


def read_secret(args: argparse.Namespace) -> bytes | None:
    if args.secret is not None:
        return args.secret.encode()
    if args.secret_file:
        try:
            mode = os.stat(args.secret_file).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                print(
                    f"Warning: Password file {args.secret_file} is publicly readable/writeable",
                    file=sys.stderr,
                )
            with open(args.secret_file, "rb") as handle:
                return handle.read()  # slappasswd hashes the whole file, newline included
        except OSError as exc:
            print(f"Could not read password from file {args.secret_file}: {exc.strerror}", file=sys.stderr)
            return None
    import getpass

    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Re-enter new password: "):
        print("Password values do not match", file=sys.stderr)
        return None
    return first.encode()


def run(args: argparse.Namespace) -> int:
    from pyldapd.model.passwords import hash_password

    if args.generate:
        # slappasswd -g prints a generated 8-character password in clear (lutil_passwd_generate's alphabet)
        if args.secret_file:
            print("Option -g incompatible with -T", file=sys.stderr)
            return 1
        if args.secret is not None:
            print("New password already provided", file=sys.stderr)
            return 1
        import secrets

        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz1234567890./"
        sys.stdout.write(
            "".join(secrets.choice(alphabet) for _ in range(8)) + ("" if args.no_newline else "\n")
        )
        return 0
    scheme = args.scheme or ("{CRYPT}" if args.salt_format else "{SSHA}")
    secret = read_secret(args)
    if secret is None:
        return 1
    try:
        hashed = hash_password(secret, scheme, crypt_salt_format=args.salt_format)
    except ValueError:
        print(f"Password generation failed for scheme {scheme}: scheme not recognized", file=sys.stderr)
        return 1
    sys.stdout.write(hashed.decode("utf-8", "surrogateescape") + ("" if args.no_newline else "\n"))
    return 0
