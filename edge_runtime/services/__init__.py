"""What runs beside the pipeline, each on a supervised thread of its own: the display feed (the results socket), the
heartbeat and metrics, and the report sender."""
