"""Overlays: code the engine calls around a database's operations (syncprov, accesslog); see base.py."""
