"""Shared by the servers, the actions and the tools; imports nothing else of the project."""
