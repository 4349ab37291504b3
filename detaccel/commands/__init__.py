"""Subcommands of the ``detaccel`` command line (see :mod:`detaccel.cli`)."""
