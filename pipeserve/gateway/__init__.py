"""The gateway: HTTP and gRPC front doors around one DAG."""
