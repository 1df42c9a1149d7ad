"""Benchmarks for airflow-here-batch: ``python -m benchmarks [--quick] [--only P1,P2]``.

Every figure is a ratio against a baseline measured in the same run (see benchmarks/README.md).
"""
