"""Subcommands of the ``i2lmesh`` command line (see ``i2lmesh.cli``)."""
