"""The HTTP service: a thin Flask layer over `abtest` and `analysis` (see `create_app`)."""
