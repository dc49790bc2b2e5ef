"""Experiments: grids of runs on Ray, Table-3-style reports, the speed suite."""
