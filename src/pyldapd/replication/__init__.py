"""pyldapd.replication"""
