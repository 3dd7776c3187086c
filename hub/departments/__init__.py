"""Departments: public security, health, civil affairs, environment, community service..."""
