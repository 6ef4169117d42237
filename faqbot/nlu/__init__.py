"""Custom Rasa NLU components of the FAQ bot, named in config.yml (README, "Quality and speed")."""
