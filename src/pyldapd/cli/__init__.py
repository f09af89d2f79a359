"""pyldapd.cli"""
