"""Deterministic, realistic demo data: `gridhub demo` (see hub/demo/loader.py).

The seed fixes who and what (the grid tree, members, residents and their ID numbers, the events'
stories, notices, feedback); the anchor day fixes when (every timestamp is the anchor plus an
offset drawn from the seed). Nothing reads the global random generator.
"""
