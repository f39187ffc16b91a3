"""The course's numeric tolerances. They live in cnnlib.testing, where the notebooks' visible
tests use them; the hidden checks and the tests import them from there (one place)."""
from cnnlib.testing import TOLERANCES, Tol

__all__ = ["TOLERANCES", "Tol"]
