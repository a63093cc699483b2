"""The benchmark's scenarios, each written once against bench/protocol.py's `System` and `Client`."""
