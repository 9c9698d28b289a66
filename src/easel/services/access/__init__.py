"""Who may call: API keys, and the server's own secret."""
