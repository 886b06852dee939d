"""Exception hierarchy of the SDK: one base class, specific subclasses per layer."""


class BpiiotError(Exception):
    """Base class of every error the SDK raises on purpose."""
