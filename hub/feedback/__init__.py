"""Residents' suggestions and complaints, each with a tracking code and a response."""
