"""The package's layout: no import circle among cdml's modules, and using a trained model
loads no trainer."""

import ast
import subprocess
import sys
from pathlib import Path

import cdml

PACKAGE = Path(cdml.__file__).parent


def module_imports() -> dict[str, set[str]]:
    """Each cdml module's imports of other cdml modules, at its top level or inside its
    functions (but for ``TYPE_CHECKING`` blocks, never run)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = set()
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                    + ([base] if base else []))  # fmt: skip
                imported |= {base} | {f"{base}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        graph[name] = imported
    return {name: {m for m in imported if m in graph and m != name}
            for name, imported in graph.items()}  # fmt: skip


def _imports(node: ast.AST):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif not (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)):
            yield from _imports(child)


def test_no_module_of_cdml_imports_itself_through_others():
    graph = module_imports()
    # Importing a module from outside its package first imports the package's __init__.
    for name, imported in graph.items():
        for module in list(imported):
            parents = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
            imported |= {p for p in parents if p in graph and not name.startswith(p + ".")}
        imported.discard(name)
    state = {}

    def visit(name, path):
        state[name] = "open"
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                cycle = path[path.index(other) :] + [other]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if other not in state:
                visit(other, [*path, other])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_embedding_with_a_checkpoint_loads_no_trainer():
    trainer = ("lightning", "cdml.training.run")
    code = ("import sys, cdml.inference, cdml.retrieval, cdml.export, cdml.serving.app; "
            f"print(sorted(m for m in sys.modules if m.startswith({trainer})))")  # fmt: skip
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    assert loaded == "[]"


def config_walk(argv: list[str]) -> dict[tuple[str, str], int]:
    """``{(caller file, callee file): calls}`` of the cdml functions that receive a run config
    (or one of its sections) while ``cdml argv`` runs, each called from another file."""
    import dataclasses

    from cdml.cli import main
    from cdml.training import config as config_module

    sections = tuple(
        cls for cls in vars(config_module).values()
        if isinstance(cls, type) and dataclasses.is_dataclass(cls)
        and cls.__module__ == config_module.__name__
    )  # fmt: skip
    root = str(PACKAGE.parent)
    edges: dict[tuple[str, str], int] = {}

    def holds_config(frame) -> bool:
        code = frame.f_code
        names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        return any(isinstance(frame.f_locals.get(name), sections) for name in names)

    def record(frame, event, _):
        if event != "call" or not frame.f_code.co_filename.startswith(root):
            return
        if not holds_config(frame):
            return
        caller = frame.f_back
        while caller is not None and not caller.f_code.co_filename.startswith(root):
            caller = caller.f_back  # through Lightning's and the standard library's frames
        if caller is None:
            return
        pair = tuple(str(Path(f.f_code.co_filename).relative_to(PACKAGE)) for f in (caller, frame))
        if pair[0] != pair[1]:
            edges[pair] = edges.get(pair, 0) + 1

    sys.setprofile(record)
    try:
        assert main(argv) == 0
    finally:
        sys.setprofile(None)
    return edges


def test_a_config_walks_down_through_cdml_never_back(tiny_run, tmp_path):
    """The files that hand a run's config on form a chain of layers: no file passes it to a
    file that passed it back (cli -> config -> run -> resolve / data module -> ...)."""
    run = [*tiny_run, "--set", "data.val_fraction=0.4", "--classes-per-batch", "2"]
    edges = config_walk(["train", *run, "--out", str(tmp_path / "run")])
    files = {f for pair in edges for f in pair}
    assert {"cli.py", "training/run.py", "training/resolve.py"} <= files
    backwards = [(a, b) for a, b in edges if (b, a) in edges]
    assert not backwards, f"the config goes back and forth between {backwards}"
    entries = {f: sum(n for (_, b), n in edges.items() if b == f) for f in files}
    assert entries["training/run.py"] == 1  # from cli.py, once: train()
    assert entries["training/resolve.py"] == 2  # before any work, then with the data's facts
