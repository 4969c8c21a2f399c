"""The curated public namespace: complete, importable, typed."""

from __future__ import annotations

import inspect
from pathlib import Path

import evolink_async as evo
from evolink_async import errors


def test_all_names_exist_and_are_sorted_into_one_namespace() -> None:
    for name in evo.__all__:
        assert hasattr(evo, name), name
    assert len(set(evo.__all__)) == len(evo.__all__)


def test_every_public_class_and_function_is_in_all() -> None:
    exported = set(evo.__all__)
    for name, value in vars(evo).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        assert name in exported, f"{name} is public but missing from __all__"


def test_every_error_is_exported_and_rooted() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, evo.EvolinkError)
        assert getattr(evo, name) is cls


def test_errors_inherit_the_matching_builtin() -> None:
    assert issubclass(evo.ValidationError, ValueError)
    assert issubclass(evo.APITimeoutError, TimeoutError)
    assert issubclass(evo.WaitTimeoutError, TimeoutError)
    assert issubclass(evo.TaskCancelledError, evo.TaskFailedError)
    assert issubclass(evo.RateLimitError, evo.APIError)


def test_error_tree_docstring_names_every_error() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        assert name in doc, f"{name} is missing from the tree drawn in errors.py"


def test_package_ships_py_typed() -> None:
    assert (Path(evo.__file__).parent / "py.typed").exists()


def test_public_names_have_docstrings() -> None:
    for name in evo.__all__:
        value = getattr(evo, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, f"{name} has no docstring"
