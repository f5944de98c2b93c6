"""The OpenAI-compatible server: protocol, schedulers, pooling, the app."""
