"""Optimization passes and the pass manager (see DESIGN.md). Not written yet."""
