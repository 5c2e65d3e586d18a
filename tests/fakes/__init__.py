"""Local stand-ins for vendor APIs, served over HTTP on loopback so the real SDKs talk to them."""
