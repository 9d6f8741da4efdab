"""The wire protocol, sans I/O: frames.py (layouts) and connection.py
(buffering and per-connection rules)."""
