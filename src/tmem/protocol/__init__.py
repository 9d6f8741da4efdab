"""The wire protocol, sans I/O: frames.py (layouts), connection.py
(buffering and per-connection rules) and address.py (where a daemon
listens)."""
