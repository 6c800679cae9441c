"""The HTTPS admission service around the engine: app (routes), TLS (rotation) and run (uvicorn)."""
