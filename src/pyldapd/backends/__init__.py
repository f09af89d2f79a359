"""pyldapd.backends"""
