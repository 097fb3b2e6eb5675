"""Import every module that registers components, exactly once (Python caches modules).

detectron2's ``Registry.register`` raises if a name is registered twice, so registration lives
in module bodies and is triggered only through imports here.
"""
import importlib

_MODULES = [
    "odedet.modeling",
    "odedet.data",
    "odedet.evaluation",
]

for _name in _MODULES:
    importlib.import_module(_name)
