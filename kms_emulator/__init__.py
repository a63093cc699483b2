"""Protocol-faithful emulator of Kurento Media Server 7.3's JSON-RPC/WebSocket API (see kurento-protocol.md)."""
