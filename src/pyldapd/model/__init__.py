"""pyldapd.model"""
