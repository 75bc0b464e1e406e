"""The ``hokusai`` command line and the local stack it runs."""
