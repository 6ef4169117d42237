"""Custom actions of the FAQ bot, served by the rasa-sdk action server."""
