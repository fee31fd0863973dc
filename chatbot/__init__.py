"""A self-hosted chatbot server: WebSocket chat driven by YAML dialog flows."""

__version__ = "0.1.0"
