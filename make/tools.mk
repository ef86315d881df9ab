# Test tools (filled in by the tools target): Python grpcio venv, grpcurl.
tools:
