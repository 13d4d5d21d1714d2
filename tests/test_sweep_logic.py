"""The pure parts of sweeps and multi-GPU runs: grid expansion, placement on free GPUs, when a run is lost,
the status table and its best row, which GPUs a run may take."""

from __future__ import annotations

import pytest

from orchestrator.errors import CheckFailed, InputError
from orchestrator.gpu_pick import choose, foreign_busy, usable_gpus
from orchestrator.launch import locked_gpus
from orchestrator.sweep import board
from orchestrator.sweep.placement import Slot, is_lost, place
from orchestrator.sweep.spec import SweepSpec, expand, load_spec


def test_the_grid_is_a_cartesian_product_crossed_with_the_zipped_paired_lists():
    spec = SweepSpec(name="s", job="j", grid={"learning_rate": [1e-3, 3e-3], "seed": [1, 2]},
                     paired=[{"lora_r": [8, 16], "lora_alpha": [16, 32]}])
    points = expand(spec)
    assert len(points) == 8
    params = [p.params for p in points]
    assert {(p["lora_r"], p["lora_alpha"]) for p in params} == {(8, 16), (16, 32)}   # zipped, never 8/32
    assert len({p.key for p in points}) == 8
    assert [p.key for p in expand(spec)] == [p.key for p in points]          # stable across controllers


def test_a_spec_without_grid_is_one_point_and_bad_specs_say_what_is_wrong(tmp_path):
    assert [p.params for p in expand(SweepSpec(name="s", job="j"))] == [{}]
    with pytest.raises(InputError, match="same length"):
        SweepSpec(name="s", job="j", paired=[{"a": [1, 2], "b": [1]}])
    with pytest.raises(InputError, match="goal"):
        SweepSpec(name="s", job="j", goal="lowest")
    with pytest.raises(InputError, match="both in grid and paired"):
        SweepSpec(name="s", job="j", grid={"a": [1]}, paired=[{"a": [1]}])
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text("name: s\njob: j\ngird: {a: [1]}\n")
    with pytest.raises(InputError, match="unknown key gird"):
        load_spec(spec_file)
    spec_file.write_text("name: s\njob: j\ngrid: {a: [1, 2]}\ninstances: [x]\n")
    assert load_spec(spec_file).instances == ["x"]


def test_placement_fills_free_gpus_in_instance_order_and_never_splits_a_run_across_boxes():
    free = {"big": [0, 1, 3], "small": [0]}
    assert place(["a", "b", "c", "d", "e"], free, 1, ["big", "small"]) == [
        ("a", Slot("big", (0,))), ("b", Slot("big", (1,))), ("c", Slot("big", (3,))), ("d", Slot("small", (0,)))]
    assert place(["a", "b"], free, 2, ["big", "small"]) == [("a", Slot("big", (0, 1)))]
    assert place(["a"], {"big": [], "small": []}, 1) == []


def test_a_run_is_lost_only_when_its_instance_is_unreachable_and_its_last_heartbeat_is_stale():
    assert not is_lost(True, 0.0, 1000.0, 60)
    assert not is_lost(False, 990.0, 1000.0, 60)
    assert is_lost(False, 900.0, 1000.0, 60)
    assert is_lost(False, None, 1000.0, 60)


def _run(run_id, point, state, loss=None, started=0.0, gpus=(0,)):
    return {"run_id": run_id, "state": state, "started_at": started,
            "meta": {"sweep": "s", "point": point, "gpus": list(gpus)},
            "last_metrics": {"event": "train_end", "train_loss": loss} if loss is not None else None}


def test_the_table_takes_each_points_best_run_marks_the_best_metric_and_skips_other_sweeps():
    spec = SweepSpec(name="s", job="j", grid={"seed": [1, 2, 3]}, metric="train_loss", goal="min")
    p1, p2, p3 = expand(spec)
    runs = [("a", _run("r1", p1.key, "finished", 2.0)), ("a", _run("r2", p2.key, "finished", 1.5, gpus=(3,))),
            ("b", _run("r3", p3.key, "running", started=5.0)), ("b", _run("r0", p3.key, "failed", started=1.0)),
            ("b", {**_run("x", p1.key, "finished", 0.1), "meta": {"sweep": "other", "point": p1.key}})]
    rows = board.build(spec, [p1, p2, p3], runs)
    assert [(r.state, r.where, r.metric, r.best) for r in rows] == [
        ("finished", "a:0", 2.0, False), ("finished", "a:3", 1.5, True), ("running", "b:0", None, False)]
    assert rows[2].attempts == 2
    lost = board.build(spec, [p1, p2, p3], runs, lost={"r3"})
    assert lost[2].state == "failed"       # the lost run no longer speaks for the point: the failed one does
    shown = board.table_rows(rows)
    assert shown[1][0].startswith("* seed=2") and shown[0][0].startswith("  ")


def test_max_goal_marks_the_highest_and_the_best_evaluation_counts_when_it_is_the_metric():
    spec = SweepSpec(name="s", job="j", grid={"seed": [1, 2]}, metric="f1", goal="max")
    p1, p2 = expand(spec)
    best = {**_run("r1", p1.key, "finished"), "best": {"metric": "f1", "value": 0.8}}
    other = {**_run("r2", p2.key, "finished"), "best": {"metric": "f1", "value": 0.7}}
    rows = board.build(spec, [p1, p2], [("a", best), ("a", other)])
    assert [r.best for r in rows] == [True, False]


PROBE = {"gpus": [{"index": i, "name": "NVIDIA A10G", "uuid": f"GPU-{i}", "memory_used_mib": 20746 if i == 2 else 0}
                  for i in range(4)],
         "gpu_processes": [{"pid": 41873, "name": "python3", "used_mib": 20480, "gpu_uuid": "GPU-2"}]}


def test_a_gpu_held_by_a_foreign_process_is_never_usable_and_orch_locked_gpus_are_skipped():
    assert set(foreign_busy(PROBE, 1024)) == {2}
    usable = usable_gpus(PROBE, "A10G", 1024)
    assert usable == [0, 1, 3]
    assert choose("big", 2, usable, [0, 1, 2, 3]) == [0, 1]
    assert choose("big", 2, usable, [0, 1, 2, 3], frozenset({0})) == [1, 3]
    with pytest.raises(CheckFailed, match="3 GPUs wanted, 2 free"):
        choose("big", 3, usable, [0, 1, 2, 3], frozenset({0}))
    with pytest.raises(CheckFailed, match="GPU 2 is not"):
        choose("big", None, usable, [0, 1, 2, 3])
    runs = [{"state": "running", "meta": {"gpus": [0, 1]}}, {"state": "finished", "meta": {"gpu": 3}},
            {"state": "unknown", "meta": {"gpu": 2}}]
    assert locked_gpus(runs) == {0, 1, 2}
