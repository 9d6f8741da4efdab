"""Experiments and benchmarks: the demo, comparisons, reports and plots.

This is the top layer: it may use every other part of tmem.
"""
