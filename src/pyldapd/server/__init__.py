"""pyldapd.server"""
