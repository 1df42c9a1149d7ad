"""Storage I/O with no task context: the atomic writer, the location rule, input reading, split parts.

Nothing here reads an Airflow task context or calls ``task.defer``; the operators above pass plain values.
"""
