"""The error of a bad user input (image, box, option): one line naming the input and the problem."""
from __future__ import annotations


class BadInputError(ValueError):
    """An input image, box or option that cannot be used; the message is one line naming the input."""


__all__ = ["BadInputError"]
