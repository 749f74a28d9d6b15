"""The package's layers, read from the source: every `mindvideo/*.py` imports the package's modules at its top, the import graph
has no cycle, and each module comes from one notebook. `python tests/test_layers.py` prints the layers."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "mindvideo"


def _named(node)->set:
    "The package modules that one import statement names (`from .x`, `from . import x`, `from mindvideo.x`, `import mindvideo.x`)."
    if isinstance(node, ast.ImportFrom):
        if node.level == 1: return {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        if node.level == 0 and node.module == "mindvideo": return {a.name for a in node.names}
        if node.level == 0 and (node.module or "").startswith("mindvideo."): return {node.module.split(".")[1]}
    if isinstance(node, ast.Import):
        return {a.name.split(".")[1] if "." in a.name else "__init__" for a in node.names if a.name.split(".")[0] == "mindvideo"}
    return set()


def import_graph()->tuple[dict, list]:
    "{module: package modules it imports}, and every such import that is not a statement of its module's body (in a function, class, `if`, `try`)."
    graph, nested = {}, []
    for f in sorted(PKG.glob("*.py")):
        tree = ast.parse(f.read_text(), str(f))
        top = {id(n) for n in tree.body}
        graph[f.stem] = set()
        for node in ast.walk(tree):
            mods = _named(node) - {f.stem}
            if not mods: continue
            graph[f.stem] |= mods
            if id(node) not in top: nested.append(f"mindvideo/{f.name}:{node.lineno}: {ast.unparse(node)}")
    return graph, nested


def _cycle(graph:dict)->list:
    "One import cycle of `graph` as a list of modules, or [] when there is none."
    state, path = {}, []
    def visit(m):
        state[m] = "open"; path.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open": return path[path.index(d):] + [d]
            if d not in state and (c := visit(d)): return c
        state[m] = "done"; path.pop()
        return []
    for m in sorted(graph):
        if m not in state and (c := visit(m)): return c
    return []


def layers(graph:dict)->list[list[str]]:
    "Modules by depth: layer 0 imports no package module, layer k imports only modules of layers below k (the graph must be acyclic)."
    depth = {}
    def d(m): 
        if m not in depth: depth[m] = 1 + max((d(x) for x in graph.get(m, ()) if x in graph), default=-1)
        return depth[m]
    for m in graph: d(m)
    return [sorted(m for m in graph if depth[m] == k) for k in range(max(depth.values()) + 1)]


def test_no_import_of_the_package_inside_a_function():
    _, nested = import_graph()
    assert not nested, "imports of mindvideo modules must sit at the top of the file:\n" + "\n".join(nested)


def test_import_graph_has_no_cycle():
    graph, _ = import_graph()
    assert not _cycle(graph), f"import cycle: {' -> '.join(_cycle(graph))}"
    print("\n" + "\n".join(f"layer {k}: {', '.join(ms)}" for k, ms in enumerate(layers(graph))))


def _upstream(m:str, graph:dict)->set:
    seen, todo = set(), [m]
    while todo:
        x = todo.pop()
        if x not in seen: seen.add(x); todo += graph.get(x, [])
    return seen


def test_helpers_never_import_the_pipeline():
    "diffusers' pipelines/animatediff/ rule: the pipeline imports its helpers (the network, the metrics, the data), never the reverse."
    graph, _ = import_graph()
    for helper in ("core", "train", "layouts", "data", "metrics", "classifiers", "eval", "cortexplot", "mae", "foundation", "contrastive",
                   "inflate", "release"):
        assert "pipeline" not in _upstream(helper, graph), f"mindvideo.{helper} reaches mindvideo.pipeline"
    assert graph["core"] == set(), "core is the bottom layer"
    assert {"pipeline", "inflate", "metrics", "contrastive"} <= _upstream("cotrain", graph)  # co-training snapshots sample with the pipeline
    assert "cotrain" not in _upstream("pipeline", graph), "the sampler is below the stage that trains its model"


def test_cache_key_reads_the_same_graph():
    "paths.code_version hashes a stage's module and everything it imports; it must see the graph this test sees."
    from mindvideo.paths import module_imports
    graph, _ = import_graph()
    assert module_imports(PKG) == graph
    assert "train" in _upstream("contrastive", graph)  # the contrastive stage runs the training loop's code: its key covers train.py


def test_each_module_comes_from_one_notebook():
    for f in sorted(PKG.glob("*.py")):
        nbs = set(re.findall(r"^# %% \.\./nbs/([^/\s]+)\.ipynb", f.read_text(), flags=re.M))
        assert len(nbs) <= 1, f"mindvideo/{f.name} is exported from {len(nbs)} notebooks: {sorted(nbs)}"


if __name__ == "__main__":
    g, nested = import_graph()
    for k, ms in enumerate(layers(g)): print(f"layer {k}: " + ", ".join(f"{m} <- {sorted(g[m]) or '-'}" for m in ms))
    if nested: print("imports inside functions:", *nested, sep="\n  ")
