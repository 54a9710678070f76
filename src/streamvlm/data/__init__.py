"""Data: real annotation formats, converters to streaming conversations, the synthetic world,
LLM-driven dialogue generation, frame features and datasets."""
