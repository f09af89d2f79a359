"""pyldapd: an LDAPv3 directory server that replicates with OpenLDAP."""

__version__ = "0.1.0"
