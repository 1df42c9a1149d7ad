"""Developer tools of the repository (the demo, the local Airflow helpers); not part of the wheel."""
