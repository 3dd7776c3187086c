"""Aggregates for decisions: event counts and times, residents by tag per grid."""
