"""Residents: personal data. Nothing may copy it into event text, logs or error messages."""
