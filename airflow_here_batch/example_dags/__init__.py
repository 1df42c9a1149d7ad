"""Example DAGs of the HERE Batch provider, shipped in the package.

Importing this package loads no DAG. To run the examples, point a DAG folder or a DAG bundle at this
directory, e.g. ``AIRFLOW__CORE__DAGS_FOLDER=$(python -c "import airflow_here_batch.example_dags as m;
print(m.__path__[0])")``. In a checkout, ``example_dags/`` at the top of the repository links here.
"""

from __future__ import annotations

from pathlib import Path

#: The directory holding the example DAG files and their sample data (``data/``).
EXAMPLE_DAGS_FOLDER: Path = Path(__file__).resolve().parent
