"""The grid tree (district > street > community > grid, or any other levels a deployment names)."""
