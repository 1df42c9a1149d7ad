"""``python -m airflow_here_batch.emulator``."""

from airflow_here_batch.emulator.cli import main

raise SystemExit(main())
