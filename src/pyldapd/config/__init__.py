"""pyldapd.config"""
