"""The import-circle checker finds circles between files and between top-level modules, and
passes a tree whose imports run one way."""

import importlib.util
import subprocess
import sys
from pathlib import Path

CHECKER = Path(__file__).resolve().parents[1] / "check-imports.py"


def checker():
    spec = importlib.util.spec_from_file_location("check_imports", CHECKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(tmp_path: Path, files: dict) -> subprocess.CompletedProcess:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return subprocess.run([sys.executable, str(CHECKER), str(tmp_path)], capture_output=True, text=True)


def test_one_way_imports_pass(tmp_path):
    result = run(tmp_path, {
        "lib.rs": "pub mod a;\npub mod b;\n",
        "a/mod.rs": "pub mod x;\npub use x::X;\n",
        "a/x.rs": "use crate::b::Y;\n/// [`Z`](crate::a::Z) in a doc link is no import.\npub struct X(Y);\n",
        "b.rs": "pub struct Y;\nconst S: &str = \"crate::a::X\";\n",
    })
    assert result.returncode == 0, result.stdout


def test_a_file_circle_fails(tmp_path):
    result = run(tmp_path, {
        "lib.rs": "pub mod a;\npub mod b;\n",
        "a.rs": "use crate::b::Y;\npub struct X;\n",
        "b.rs": "use crate::a::{self, X};\npub struct Y;\n",
    })
    assert result.returncode == 1
    assert "files: a.rs <-> b.rs" in result.stdout


def test_a_module_circle_through_different_files_fails(tmp_path):
    result = run(tmp_path, {
        "lib.rs": "pub mod store;\npub mod zk;\n",
        "store/mod.rs": "pub mod apply;\n",
        "store/apply.rs": "use crate::zk::watch::Watches;\n",
        "zk/mod.rs": "pub mod watch;\npub mod handlers;\n",
        "zk/watch.rs": "pub struct Watches;\n",
        "zk/handlers.rs": "use super::super::store::apply;\n",
    })
    assert result.returncode == 1
    assert "modules: store -> zk" in result.stdout and "zk -> store" in result.stdout


def test_a_dev_dependency_back_on_the_tested_crate_is_a_crate_circle():
    def package(name, *deps):
        return {"name": name, "dependencies": [{"name": d, "kind": "dev"} for d in deps]}

    circles = checker().crate_circles({"packages": [package("server", "testkit"), package("testkit", "server")]})
    assert circles == ["server <-> testkit"]
    one_way = {"packages": [package("server", "testkit"), package("testkit", "contract"), package("contract")]}
    assert checker().crate_circles(one_way) == []
