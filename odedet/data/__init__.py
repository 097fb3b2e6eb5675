"""Datasets and mappers. Importing this package registers odedet's datasets."""
from .mappers import build_mapper, register_mapper_factory

__all__ = ["build_mapper", "register_mapper_factory"]
