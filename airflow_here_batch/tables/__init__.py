"""The SQL pipeline with no operators: record mapping and fingerprints, dialects, extract and sink.

Built on common.sql's ``DbApiHook``; the operators in :mod:`airflow_here_batch.operators.sql` are thin
adapters over it.
"""
