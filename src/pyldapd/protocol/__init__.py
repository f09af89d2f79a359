"""pyldapd.protocol"""
