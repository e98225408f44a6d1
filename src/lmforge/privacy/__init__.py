"""Privacy tools: finding and redacting personal data in training text."""
