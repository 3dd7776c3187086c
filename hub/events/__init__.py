"""Events (incidents, needs, complaints): reported, dispatched to departments, resolved."""
