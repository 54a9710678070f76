"""Converters from real annotations to the conversation JSONL format."""
