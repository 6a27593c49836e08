"""Ponte: a WhatsApp <-> Chatwoot bridge."""

__version__ = "0.1.0"
