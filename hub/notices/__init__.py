"""Notices published to residents of some grids: draft -> published -> retracted."""
