"""The demo picks the main suite's package index and its own Translation-en file."""

from __future__ import annotations

from modelfab.demo import demo_scenarios, pick_index

PREFIX = "deb.debian.org_debian"


def _touch(path, size):
    path.write_bytes(b"x" * size)
    return path


def test_pick_index_prefers_main_suite_and_matching_translation(tmp_path):
    security = _touch(
        tmp_path / f"{PREFIX}-security_dists_bookworm-security_main_binary-amd64_Packages.lz4", 10
    )
    main = _touch(tmp_path / f"{PREFIX}_dists_bookworm_main_binary-amd64_Packages.lz4", 1000)
    t_security = _touch(
        tmp_path / f"{PREFIX}-security_dists_bookworm-security_main_i18n_Translation-en.lz4", 5
    )
    t_main = _touch(tmp_path / f"{PREFIX}_dists_bookworm_main_i18n_Translation-en.lz4", 500)
    assert pick_index([security, main], [t_security, t_main]) == (main, t_main)
    assert pick_index([security, main], [t_security]) == (main, None)
    assert pick_index([], [t_main]) == (None, None)


def test_demo_has_the_three_scenarios():
    specs = [spec for spec, _ in demo_scenarios("ds")]
    assert [s.name for s in specs] == ["demo-section", "demo-interface", "demo-game"]
    assert specs[0].label_field == "section"
    assert [s.derived_label.facet for s in specs[1:]] == ["interface", "game"]
    assert all(s.split.group_field == "source" for s in specs)
