"""CI pipelines for a strata repository: generated pipeline files and dependency-ordered job matrices."""

from strata.ci.generate import SYSTEMS, generate
from strata.ci.matrix import matrix

__all__ = ["SYSTEMS", "generate", "matrix"]
