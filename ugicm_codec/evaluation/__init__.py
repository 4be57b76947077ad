"""Evaluation tooling: rate-distortion runs, Bjøntegaard deltas, machine-task scores, speed benches.

Nothing in the codec's encode/decode path imports this package; it is for measuring the codec.
Importing the package (and its ``cli`` module) imports nothing heavy: torch, matplotlib and the
task runtimes are imported by the functions that need them.
"""
