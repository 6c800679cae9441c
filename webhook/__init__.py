"""netpol-guard: a validating admission webhook that makes deny-all NetworkPolicy coverage real."""

__version__ = "0.1.0"
