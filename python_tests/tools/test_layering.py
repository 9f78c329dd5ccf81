"""The package's layers import only the layers below them (DESIGN.md, "Layout"; docs/architecture.md):
every `import dssm_kernels...` in every module, at the top or inside a function, read from the source."""
import ast
import pathlib

import dssm_kernels

ROOT = pathlib.Path(dssm_kernels.__file__).parent

# rank of each part of the package: a module may import parts of lower rank and its own part
RANK = {"_validate": 0, "_backend": 0, "_C": 0, "triton": 1, "ops": 2, "hippo": 3, "tasks": 3, "nn": 4,
        "reduction": 5, "deploy": 6, "workflows": 7, "cli": 8, "__main__": 9, "__init__": 9}


def _part(module: str) -> str | None:
    """'dssm_kernels.nn.s4d' -> 'nn'; None for the bare package."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else None


def _imports(path: pathlib.Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dssm_kernels"):
                    yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("dssm_kernels"):
            yield node.lineno, node.module, [a.name for a in node.names]


def test_every_import_goes_down():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        own = rel.parts[0].removesuffix(".py")
        if own == "__init__" and len(rel.parts) == 1:
            continue                          # the package root re-exports the ops
        for line, module, names in _imports(path):
            part = _part(module)
            if part is None:                  # `import dssm_kernels as dk` / `from dssm_kernels import x`
                targets = [n for n in (names or []) if n in RANK] or ["ops"]
            else:
                targets = [part]
            for t in targets:
                if t != own and RANK[t] >= RANK[own]:
                    wrong.append(f"{rel}:{line} imports {module}{'' if not names else ' ' + str(names)}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_the_rank_table_names_every_part():
    parts = {p.name.removesuffix(".py") for p in ROOT.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert parts <= set(RANK), f"parts without a rank: {sorted(parts - set(RANK))}"
