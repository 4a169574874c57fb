"""The ``healer`` command line. I/O libraries are imported lazily, per command."""
