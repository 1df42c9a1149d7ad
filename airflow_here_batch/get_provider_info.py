"""Provider metadata read by Airflow's ProvidersManager through the ``apache_airflow_provider`` entry point.

Keep this free of imports beyond the version: Airflow calls it for every CLI command and DAG parse,
and a malformed answer breaks ``airflow providers list`` for the whole installation.
"""

from __future__ import annotations

from typing import Any

from airflow_here_batch import __version__

INTEGRATION_NAME = "HERE Batch"

# The connection form, declared here so the UI does not import the hook (Airflow >= 3.2 reads these;
# on 3.0/3.1 the hook's get_connection_form_widgets / get_ui_field_behaviour build the same form).
# Every part of the base URL has a visible field (Host, Port, Path = schema, scheme), so a connection
# made from a URI keeps all of it when it is edited and saved in the UI.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "scheme": {
        "label": "URL scheme",
        "schema": {"type": ["string", "null"]},
        "description": "https (default) or http (the local emulator); used when Host is a bare host name.",
    },
    "access_key_id": {
        "label": "OAuth access key id",
        "schema": {"type": ["string", "null"]},
        "description": "here.access.key.id, for OAuth bearer tokens instead of an API key.",
    },
    "access_key_secret": {
        "label": "OAuth access key secret",
        "schema": {"type": ["string", "null"], "format": "password"},
        "description": "here.access.key.secret.",
    },
    "token_url": {
        "label": "OAuth token endpoint",
        "schema": {"type": ["string", "null"]},
        "description": "Defaults to https://account.api.here.com/oauth2/token.",
    },
    "credentials_file": {
        "label": "Path to credentials.properties",
        "schema": {"type": ["string", "null"]},
        "description": "A HERE platform credentials.properties file (alternative to the three fields above).",
    },
    "timeout": {
        "label": "Request timeout (s)",
        "schema": {"type": ["number", "null"], "default": 60},
    },
    "max_retries": {
        "label": "Retries on 429/5xx/connection errors",
        "schema": {"type": ["integer", "null"], "default": 5},
    },
    "backoff_base": {
        "label": "Retry backoff base (s)",
        "schema": {"type": ["number", "null"], "default": 1},
    },
    "backoff_max": {
        "label": "Retry backoff cap (s)",
        "schema": {"type": ["number", "null"], "default": 60},
    },
    "proxies": {
        "label": "Proxies (JSON)",
        "schema": {"type": ["string", "null"]},
        "description": 'e.g. {"https": "http://proxy:3128"}',
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    # login is unused; every extra HERE reads is a field of its own above.
    "hidden-fields": ["login", "extra"],
    "relabeling": {"host": "Host or base URL", "schema": "Path", "password": "API key"},
    "placeholders": {
        "host": "batch.search.hereapi.com (default), or a whole URL: http://127.0.0.1:8765/v7",
        "port": "default for the scheme",
        "schema": "v7",
        "password": "HERE API key (leave empty when using OAuth credentials)",
    },
}


# ``[here_batch]``: shown by ``airflow config list``; read by ``airflow_here_batch.files.locations``
# (base location) and ``airflow_here_batch.utils.spend`` (bound, price).
CONFIG: dict[str, Any] = {
    "here_batch": {
        "description": (
            "Where HERE Batch tasks keep the files they hand to each other (results, inputs), and the "
            "bound on the records a run may send."
        ),
        "options": {
            "base_location": {
                "description": (
                    "Base location (any fsspec URI: s3://bucket/prefix, gs://..., file:///shared/dir) of the "
                    "files tasks hand to each other. Every worker must reach it: on several machines use "
                    "object storage or a shared mount. Empty: file://$AIRFLOW_HOME/here_batch."
                ),
                "version_added": "0.1.0",
                "type": "string",
                "example": "s3://my-bucket/here-batch",
                "default": "",
            },
            "base_location_conn_id": {
                "description": "Airflow connection for the base location's storage (e.g. aws_default).",
                "version_added": "0.1.0",
                "type": "string",
                "example": "aws_default",
                "default": "",
            },
            "max_records_to_send": {
                "description": (
                    "The most records one run of a task may send to HERE (a split: all its parts together; "
                    "mapped submits: all map indexes of the run together). Above it the task fails before "
                    "anything is uploaded, naming the count by reason. A task's own max_records_to_send "
                    "(e.g. a DAG param) wins. Empty: no bound."
                ),
                "version_added": "0.3.0",
                "type": "integer",
                "example": "100000",
                "default": "",
            },
            "price_per_1000_records": {
                "description": (
                    "Your price per 1,000 records (any currency), for the estimated cost in logs and XCom. "
                    "Empty: no estimate. No price is built in."
                ),
                "version_added": "0.3.0",
                "type": "float",
                "example": "0.83",
                "default": "",
            },
        },
    }
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider description that Airflow validates against ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-here-batch",
        "name": "HERE Batch",
        "description": "HERE Batch API v7: batch geocoding, reverse geocoding and lookup by id.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION_NAME,
                "external-doc-url": "https://www.here.com/docs/category/geocoding-search-v7",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {"integration-name": INTEGRATION_NAME, "python-modules": ["airflow_here_batch.hooks.here_batch"]}
        ],
        "operators": [
            {
                "integration-name": INTEGRATION_NAME,
                "python-modules": [
                    "airflow_here_batch.operators.batch_job",
                    "airflow_here_batch.operators.split",
                    "airflow_here_batch.operators.geocode_table",
                ],
            }
        ],
        "sensors": [
            {"integration-name": INTEGRATION_NAME, "python-modules": ["airflow_here_batch.sensors.batch_job"]}
        ],
        "triggers": [
            {
                "integration-name": INTEGRATION_NAME,
                "python-modules": [
                    "airflow_here_batch.triggers.batch_job",
                    "airflow_here_batch.triggers.slot_wait",
                ],
            }
        ],
        "config": CONFIG,
        "connection-types": [
            {
                "connection-type": "here_batch",
                "hook-class-name": "airflow_here_batch.hooks.here_batch.HereBatchHook",
                "hook-name": "HERE Batch",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
    }
