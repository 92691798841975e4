"""Every public name is documented: a docstring with its sections, a place in the reference.

The API reference (``docs/api/*.rst``) names each public object explicitly,
so a name added to a public module without a reference entry, or a reference
entry left behind by a rename, would go unnoticed; and a docstring without
``Args:``/``Returns:`` renders without them. These tests name every such
object. The docs build itself (``sphinx-build -W``, the ``docs`` extra) runs in
``.ci/run``.
"""

import importlib
import inspect
import pathlib
import re
import types
import typing

import pytest

ROOT = pathlib.Path(__file__).parents[1]
API_DIR = ROOT / "docs" / "api"

# The public modules: the Optax layer at the top and the named submodules.
PUBLIC_MODULES = (
    "lrtransfer",
    "lrtransfer.train",
    "lrtransfer.models",
    "lrtransfer.data",
    "lrtransfer.recipes",
    "lrtransfer.checkpoint",
    "lrtransfer.experiment",
)

_DIRECTIVE = re.compile(
    r"^\.\. (?:auto)?(?:function|class|exception|data|py:function|py:class|"
    r"py:exception|py:data)::\s+([\w.]+)", re.M)
_CURRENT_MODULE = re.compile(r"^\.\. (?:py:)?currentmodule::\s+([\w.]+)", re.M)


def public_names(module_name: str) -> dict[str, object]:
  """The public objects of a module: ``__all__`` if it has one, else every
  name without a leading underscore that is not a module."""
  module = importlib.import_module(module_name)
  names = getattr(module, "__all__", None)
  if names is None:
    names = [n for n in vars(module) if not n.startswith("_")]
  objects = {n: getattr(module, n) for n in names}
  return {n: o for n, o in objects.items()
          if not isinstance(o, types.ModuleType)}


def referenced_names() -> set[str]:
  """Fully qualified names that the reference pages document."""
  found = set()
  for page in sorted(API_DIR.glob("*.rst")):
    current = ""
    for line in page.read_text().splitlines():
      if m := _CURRENT_MODULE.match(line):
        current = m.group(1)
      elif m := _DIRECTIVE.match(line):
        name = m.group(1)
        found.add(name if "." in name else f"{current}.{name}")
  return found


def _is_data(obj: object) -> bool:
  return not (inspect.isclass(obj) or callable(obj))


def _own_doc(obj: object) -> str:
  """The object's own docstring ('' for a NamedTuple's generated one)."""
  doc = inspect.getdoc(obj) or ""
  if inspect.isclass(obj) and issubclass(obj, tuple):
    generated = f"{obj.__name__}({', '.join(getattr(obj, '_fields', ()))})"
    if doc == generated:
      return ""
  return doc


def _takes_args(obj: object) -> bool:
  try:
    signature = inspect.signature(obj)
  except (TypeError, ValueError):
    return False
  return any(p.name not in ("self", "cls") for p in signature.parameters.values())


def _returns_something(func: object) -> bool:
  try:
    hints = typing.get_type_hints(func)
  except Exception:  # pylint: disable=broad-except
    hints = getattr(func, "__annotations__", {})
  return hints.get("return", inspect.Parameter.empty) not in (None, type(None))


def docstring_problems(qualified: str, obj: object) -> list[str]:
  """What the docstring of one public object lacks ([] if nothing)."""
  if _is_data(obj):
    return []  # constants are described in the reference page itself
  doc = _own_doc(obj)
  if not doc.strip():
    return [f"{qualified}: no docstring"]
  problems = []
  if inspect.isclass(obj):
    is_record = issubclass(obj, tuple) or issubclass(obj, BaseException)
    if not is_record and _takes_args(obj) and not re.search(
        r"^(Args|Attributes):", doc, re.M):
      problems.append(f"{qualified}: no Args: or Attributes: section")
    return problems
  if _takes_args(obj) and not re.search(r"^Args:", doc, re.M):
    problems.append(f"{qualified}: no Args: section")
  if _returns_something(obj) and not re.search(r"^(Returns|Yields):", doc,
                                               re.M):
    problems.append(f"{qualified}: no Returns: section (or annotate -> None)")
  return problems


ALL_PUBLIC = sorted((f"{m}.{n}", o) for m in PUBLIC_MODULES
                    for n, o in public_names(m).items())


def test_the_public_modules_export_something():
  # Guards the two tests below against passing on an empty list.
  for module in PUBLIC_MODULES:
    assert public_names(module), module
  assert len(ALL_PUBLIC) > 50


def test_every_public_name_is_in_the_reference():
  reference = referenced_names()
  missing = [q for q, _ in ALL_PUBLIC if q not in reference]
  assert not missing, (
      "public names missing from docs/api/*.rst (add an autofunction/"
      f"autoclass entry): {missing}")


def test_the_reference_names_only_public_objects():
  public = {q for q, _ in ALL_PUBLIC}
  stale = sorted(referenced_names() - public)
  assert not stale, f"docs/api/*.rst documents names that are not public: {stale}"


def test_every_public_name_has_a_complete_docstring():
  problems = [p for q, o in ALL_PUBLIC for p in docstring_problems(q, o)]
  assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc, expected", [
    ("Summary.\n\nArgs:\n  x: a.\n\nReturns:\n  y.", []),
    ("Summary.\n\nReturns:\n  y.", ["f: no Args: section"]),
    ("Summary.\n\nArgs:\n  x: a.", ["f: no Returns: section (or annotate -> None)"]),
    ("", ["f: no docstring"]),
])
def test_docstring_check_finds_missing_sections(doc, expected):
  def f(x: int) -> int:
    return x
  f.__doc__ = doc
  assert docstring_problems("f", f) == expected


def test_docstring_check_spares_functions_returning_none():
  def g(x: int) -> None:
    """Summary.

    Args:
      x: a.
    """
    del x
  assert docstring_problems("g", g) == []


# Words that describe how the project was built rather than what it does;
# what changed between versions belongs in CHANGELOG.md, in terms of
# behaviour.
_HISTORY = re.compile(r"\bsessions?\b|\bissue[ -]?\d|\baudit|founding article",
                      re.I)


def test_user_documents_describe_the_project_not_its_history():
  documents = [ROOT / "README.md", ROOT / "CHANGELOG.md",
               *sorted((ROOT / "docs").glob("**/*.md")),
               *sorted(API_DIR.glob("*.rst"))]
  found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
           for path in documents if "_build" not in path.parts
           for number, line in enumerate(path.read_text().splitlines(), 1)
           if _HISTORY.search(line)]
  assert not found, "\n".join(found)
