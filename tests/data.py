"""Test data shared by the server and differential tests."""

BASE_LDIF = """\
dn: dc=example,dc=com
objectClass: top
objectClass: dcObject
objectClass: organization
o: Example Corporation
dc: example

dn: ou=People,dc=example,dc=com
objectClass: organizationalUnit
ou: People
description: All the people

dn: ou=Groups,dc=example,dc=com
objectClass: organizationalUnit
ou: Groups

dn: uid=jdoe,ou=People,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: posixAccount
cn: John Smith
cn: Johnny
sn: Smith
givenName: John
uid: jdoe
mail: john.smith@example.com
telephoneNumber: +1 555 0101
uidNumber: 1001
gidNumber: 100
homeDirectory: /home/jdoe
loginShell: /bin/bash
userPassword: secret1
description: Engineer, (first) * star

dn: uid=asmith,ou=People,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: posixAccount
cn: Alice Smith
sn: Smith
givenName: Alice
uid: asmith
mail: alice@example.com
telephoneNumber: +1-555-0102
uidNumber: 1002
gidNumber: 100
homeDirectory: /home/asmith
employeeNumber: 42
userPassword: secret2

dn: uid=bwong,ou=People,dc=example,dc=com
objectClass: inetOrgPerson
cn: Bob Wong
sn: Wong
uid: bwong
mail: BOB@Example.COM
employeeNumber: 7
title: Manager

dn: uid=cjones,ou=People,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: posixAccount
cn: Carol Jones
sn: Jones
uid: cjones
uidNumber: 1010
gidNumber: 200
homeDirectory: /home/cjones

dn: cn=staff,ou=Groups,dc=example,dc=com
objectClass: posixGroup
cn: staff
gidNumber: 100
memberUid: jdoe
memberUid: asmith

dn: cn=admins,ou=Groups,dc=example,dc=com
objectClass: groupOfNames
cn: admins
member: uid=jdoe,ou=People,dc=example,dc=com
member: UID=BWONG, OU=People,dc=EXAMPLE,dc=com
"""
