"""Every `st.session_state` key the dashboard uses is declared in dashboard/state.py.

Two ways: the sources are scanned (no access to session_state names a key by a string literal,
an f-string or an attribute, and no widget's literal `key=` reuses a declared key), and a session
that visits every page and clicks the actions that store results holds only declared keys (or
the keys of widgets on the page).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dashboard import state

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"
SOURCES = sorted(DASHBOARD.rglob("*.py"))
MAPPING_METHODS = {"get", "setdefault", "pop", "keys", "items", "values", "to_dict", "clear", "update"}


def _is_session_state(node: ast.AST, aliases: set[str]) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "session_state") or \
        (isinstance(node, ast.Name) and node.id in aliases)


def _literal(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))


def literal_session_keys(source: str) -> list[str]:
    """Places where session_state is indexed by a literal (or an attribute): 'line: code'."""
    tree = ast.parse(source)
    aliases = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) and _is_session_state(n.value, set())
               for t in n.targets if isinstance(t, ast.Name)}  # ss = st.session_state
    bad = []
    for n in ast.walk(tree):
        hit = None
        if isinstance(n, ast.Subscript) and _is_session_state(n.value, aliases) and _literal(n.slice):
            hit = n
        elif isinstance(n, ast.Attribute) and _is_session_state(n.value, aliases) and n.attr not in MAPPING_METHODS:
            hit = n  # st.session_state.recipe: a key spelled as an attribute
        elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in MAPPING_METHODS
              and _is_session_state(n.func.value, aliases) and n.args and _literal(n.args[0])):
            hit = n
        elif (isinstance(n, ast.Compare) and _literal(n.left)
              and any(_is_session_state(c, aliases) for c in n.comparators)):
            hit = n  # "x" in st.session_state
        if hit is not None:
            bad.append(f"{hit.lineno}: {ast.unparse(hit)}")
    return bad


def literal_widget_keys(source: str) -> list[str]:
    """The string literals passed as `key=` (the constant head of an f-string too)."""
    keys = []
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, ast.Call):
            for kw in n.keywords:
                if kw.arg == "key" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                    keys.append(kw.value.value)
                elif kw.arg == "key" and isinstance(kw.value, ast.JoinedStr) and kw.value.values \
                        and isinstance(kw.value.values[0], ast.Constant):
                    keys.append(kw.value.values[0].value)
    return keys


def test_the_scan_finds_literal_keys():
    code = ("import streamlit as st\nss = st.session_state\nst.session_state['a'] = 1\nst.session_state.b = 2\n"
            "st.session_state.get('c')\nss[f'd{1}']\n'e' in st.session_state\nst.session_state.get(state.OK)\n")
    assert [line.split(":")[0] for line in literal_session_keys(code)] == ["3", "4", "5", "6", "7"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(DASHBOARD)))
def test_no_session_key_is_a_string_of_its_own(path):
    assert literal_session_keys(path.read_text(encoding="utf-8")) == []


def test_declared_keys_are_documented_and_not_reused_as_widget_keys():
    assert all(what.strip() for what in {**state.SESSION_KEYS, **state.SESSION_KEY_FAMILIES}.values())
    for path in SOURCES:
        reused = [k for k in literal_widget_keys(path.read_text(encoding="utf-8")) if state.is_declared(k)]
        assert reused == [], f"{path.name}: declared session keys used as literal widget keys: {reused}"


def _widget_keys(at) -> set[str]:
    def walk(node):
        yield node
        children = getattr(node, "children", None)
        if isinstance(children, dict):
            for child in children.values():
                yield from walk(child)

    return {k for n in walk(at._tree) if isinstance(k := getattr(n, "key", None), str)}


def test_a_session_through_every_page_holds_only_declared_keys(monkeypatch):
    from streamlit.testing.v1 import AppTest

    from dashboard import pages

    monkeypatch.setenv("HEADROOM_DASHBOARD_MODEL", "tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = AppTest.from_file(str(DASHBOARD / "app.py"), default_timeout=120)
    at.query_params["page"] = "model"
    at.run()
    seen = set()

    def check():
        assert not at.exception, at.exception
        undeclared = set(at.session_state.keys()) - _widget_keys(at)
        undeclared = {k for k in undeclared if not state.is_declared(k)}
        assert undeclared == set(), f"undeclared session keys: {sorted(undeclared)}"
        seen.update(at.session_state.keys())

    for page in pages.PAGES:
        at.switch_page(f"views/{page.file}").run()
        check()
        if page.name == "heads":  # importance (computed for the preset), the random seed
            next(b for b in at.button if b.label == "Sixteen heads: mask 40%").click().run()
            check()
            next(b for b in at.button if b.label == "Random k").click().run()
            check()
        if page.name == "profile":
            at.button(key="prof_run").click().run()
            check()
            at.button(key="prof_sweep").click().run()
            check()
            assert not at.error, [e.value for e in at.error]  # the sweep's result has a key of its own
    assert {state.importance_key(at.session_state[state.CHOICE]), state.HEADS_SEED, state.HISTORY,
            state.PROFILES, state.PROFILE_SWEEP, state.head_grid_key(0)} <= seen
