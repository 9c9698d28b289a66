"""Images once drawn: checks, watermark, credentials, encoding, storage and URLs."""
