"""Admin registrations of the model side (Django looks for this module)."""
from .evaluation import admin as evaluation_admin  # noqa: F401
