"""`lmforge ui`: the local web app over the run folders (see `lmforge.ui`)."""

from lmforge.ui.app import run

__all__ = ["run"]
