"""The code a Python stage runs: its file, the project modules it imports (transitively), and
the versions of the third-party packages they import, found statically and cached by file stat.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

# The engine decides how stages run, not what they compute: editing it (or the
# `cellstore.stage` re-export every stage imports) must not rebuild every table.
ENGINE_MODULES = ("cellstore.engine", "cellstore.stage", "cellstore.errors")
CACHE_VERSION = 1


@dataclass
class _FileInfo:
    sha: str
    imports: list[tuple[str, int]]  # (module or "module:name", relative level)
    # Resolved imports, kept with the file: [[path, module], ...] and third-party names.
    edges: list[list[str]] | None = None
    packages: list[str] | None = None


@dataclass
class CodeGraph:
    """Resolves imports under `roots` (the project and the folder holding `cellstore`).

    Per-file results (content hash and the imports the AST names, function bodies included:
    stages import heavy modules lazily) are kept in `cache_path`, keyed by path, size and
    mtime, so a no-op build parses nothing.
    """

    roots: list[Path]
    cache_path: Path | None = None
    _files: dict[str, _FileInfo] = field(default_factory=dict)
    _stats: dict[str, list] = field(default_factory=dict)
    _dirty: bool = False
    _versions: dict[str, str] | None = None
    _valid: set[str] = field(default_factory=set)  # files checked in this process

    def __post_init__(self) -> None:
        self.roots = [r.resolve() for r in dict.fromkeys(self.roots)]
        if self.cache_path and self.cache_path.is_file():
            try:
                data = json.loads(self.cache_path.read_text())
            except (OSError, ValueError):
                data = {}
            if data.get("version") == CACHE_VERSION:
                for path, entry in data.get("files", {}).items():
                    self._stats[path] = entry["stat"]
                    imports = [(m, lvl) for m, lvl in entry["imports"]]
                    info = _FileInfo(entry["sha"], imports, entry.get("edges"))
                    info.packages = entry.get("packages")
                    self._files[path] = info
                packages = data.get("packages") or {}
                if packages.get("stamp") == _site_stamp():
                    self._versions = packages.get("versions")

    # ---- public ------------------------------------------------------------------------
    def stage_code(self, stage_file: Path, display_root: Path) -> dict[str, str]:
        """{file or "package:<dist>": sha or version} of everything the stage file runs."""
        out: dict[str, str] = {}
        todo = [(stage_file.resolve(), None)]
        seen: set[Path] = set()
        packages: set[str] = set()
        while todo:
            path, module = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            info = self._info(path)
            out[self._display(path, display_root)] = info.sha
            if str(path) not in self._valid:
                if (
                    info.edges is None
                    or info.packages is None
                    or not all(os.path.isfile(p) for p, _ in info.edges)
                ):
                    self._link(info, module, path)
                self._valid.add(str(path))
            packages.update(info.packages or ())
            todo.extend((Path(p), m) for p, m in info.edges or ())
        for top in sorted(packages):
            version = self._package_version(top)
            if version is not None:
                out[f"package:{top}"] = version
        return out

    def save(self) -> None:
        """Write the per-file cache if anything was parsed (best effort: a cache only)."""
        if not self._dirty or self.cache_path is None:
            return
        files = {
            p: {
                "stat": self._stats[p],
                "sha": i.sha,
                "imports": i.imports,
                "edges": i.edges,
                "packages": i.packages,
            }
            for p, i in self._files.items()
            if p in self._stats
        }
        packages = {"stamp": _site_stamp(), "versions": self._versions}
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_path.with_suffix(".tmp")
            payload = {"version": CACHE_VERSION, "files": files, "packages": packages}
            tmp.write_text(json.dumps(payload))
            tmp.replace(self.cache_path)
        except OSError:
            pass
        self._dirty = False

    # ---- files -------------------------------------------------------------------------
    def _info(self, path: Path) -> _FileInfo:
        key = str(path)
        if key in self._valid:
            return self._files[key]
        st = path.stat()
        stat = [st.st_size, st.st_mtime_ns]
        cached = self._files.get(key)
        if cached is not None and self._stats.get(key) == stat:
            return cached
        data = path.read_bytes()
        info = _FileInfo(hashlib.sha256(data).hexdigest()[:16], _imports(data, path))
        self._files[key], self._stats[key] = info, stat
        self._dirty = True
        return info

    def _link(self, info: _FileInfo, module: str | None, path: Path) -> None:
        """Resolve a file's imports once; kept in the cache beside its hash.

        (A module file added later that an unchanged file's import would now resolve to is
        not seen until that file changes; a removed one is.)"""
        edges: dict[str, str] = {}
        packages: set[str] = set()
        for name, level in info.imports:
            for target in self._resolve(name, level, module, path):
                if isinstance(target, str):
                    packages.add(target)
                else:
                    edges[str(target[0])] = target[1]
        info.edges = [[p, m] for p, m in sorted(edges.items())]
        info.packages = sorted(packages)
        self._dirty = True

    def _display(self, path: Path, display_root: Path) -> str:
        for root in (display_root, *self.roots):
            try:
                return path.relative_to(root).as_posix()
            except ValueError:
                continue
        return str(path)

    # ---- import resolution -------------------------------------------------------------
    def _resolve(
        self, name: str, level: int, module: str | None, path: Path
    ) -> list[tuple[Path, str] | str]:
        """Local files (with their module names) or a third-party top-level name."""
        base, _, member = name.partition(":")
        if level:
            if module is None:  # a relative import in a stage file: nothing to follow
                return []
            package = module.split(".")
            if path.name != "__init__.py":
                package = package[:-1]
            package = package[: len(package) - (level - 1)] if level > 1 else package
            base = ".".join([*package, base] if base else package)
        if not base:
            return []
        top = base.split(".")[0]
        if top in sys.stdlib_module_names or base.startswith(ENGINE_MODULES):
            return []
        found: list[tuple[Path, str] | str] = []
        parts = base.split(".")
        for root in self.roots:
            if not (root / top).is_dir() and not (root / f"{top}.py").is_file():
                continue
            # Importing a.b.c runs a/__init__.py and a/b/__init__.py too.
            for i in range(1, len(parts) + 1):
                mod = ".".join(parts[:i])
                file = _module_file(root, parts[:i])
                if file is not None and not mod.startswith(ENGINE_MODULES):
                    found.append((file, mod))
            if member:
                sub = f"{base}.{member}"
                file = _module_file(root, [*parts, member])
                if file is not None and not sub.startswith(ENGINE_MODULES):
                    found.append((file, sub))
            return found
        return [top]

    def _package_version(self, top: str) -> str | None:
        if self._versions is None:
            # Scanning every installed distribution costs ~0.5 s: done once, then cached
            # until an install or removal touches a site-packages folder.
            import importlib.metadata as md

            self._dirty = True

            self._versions = {}
            for name, dists in md.packages_distributions().items():
                versions = []
                for dist in dists:
                    try:
                        versions.append(f"{dist}=={md.version(dist)}")
                    except md.PackageNotFoundError:
                        continue
                self._versions[name] = ",".join(sorted(set(versions)))
        return self._versions.get(top) or None


def _site_stamp() -> list[list]:
    """Modification times of the package folders on sys.path (pip install changes them)."""
    stamp = []
    for entry in sys.path:
        if entry and ("site-packages" in entry or "dist-packages" in entry):
            try:
                stamp.append([entry, os.stat(entry).st_mtime_ns])
            except OSError:
                continue
    return stamp


def _module_file(root: Path, parts: list[str]) -> Path | None:
    folder = root.joinpath(*parts)
    if (folder / "__init__.py").is_file():
        return folder / "__init__.py"
    file = folder.with_suffix(".py")
    return file if file.is_file() else None


def _imports(data: bytes, path: Path) -> list[tuple[str, int]]:
    """Every import the file names, at any depth (imports inside functions included)."""
    try:
        tree = ast.parse(data, filename=os.fspath(path))
    except SyntaxError:
        return []  # the stage loader reports syntax errors with a line number
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            found.append((base, node.level))
            found.extend((f"{base}:{alias.name}", node.level) for alias in node.names)
    return sorted(set(found))
