"""Packs: the planner (torch-free), a pack's runs trained as its job trains them (each
must end bit for bit as the same run trained alone) and the packed backend."""

import copy

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import REPO, TRAIN_SETTINGS, default_config, tiny_config
from test_checkpoint import Killed, stop_at_step
from training import train_pack, train_run
from uninterrupted import without_wall_time

from resdepth import checkpoint, data, grid, models, packed, packs, scalings, train
from resdepth.settings import result_settings


def paper_config():
    return yaml.safe_load((REPO / "config" / "paper.yaml").read_text())


# The planner.


@pytest.mark.parametrize("config", [default_config(), paper_config()], ids=["default", "paper"])
def test_every_run_is_in_exactly_one_pack_of_runs_sharing_its_key(config):
    runs, plan = packs.training_packs(config)
    members = [run_id for pack in plan.values() for run_id in pack]
    assert sorted(members) == sorted(runs)  # each run once
    for pack_id, pack in plan.items():
        keys = {packs.pack_key(runs[run_id]) for run_id in pack}
        assert keys == {pack_id.rsplit("-p", 1)[0]}
        assert len(pack) <= config["training"]["packing"]["max_members"]
    assert len(plan) < len(runs)


def test_lambda_sweep_joins_the_grid_plain_pack_of_its_depth_and_seed():
    config = paper_config()
    runs, plan = packs.training_packs(config)
    sweep = grid.capacity_runs(config)
    for seed in config["capacity"]["seed"]:
        pack_id = f"cifar10-conv-n100-plain-w64-lr0.02-e30-b128-s{seed}-p0"
        grid_plain = [
            r
            for r, c in grid.grid_runs(config).items()
            if (c["depth"], c["seed"], scalings.family(c["scaling"])) == (100, seed, "plain")
        ]
        seed_sweep = [r for r, c in sweep.items() if c["seed"] == seed]
        assert set(plan[pack_id]) == {*grid_plain, *seed_sweep} and len(plan[pack_id]) == 13


def test_families_never_share_a_pack():
    runs, plan = packs.training_packs(default_config())
    for pack in plan.values():
        assert len({scalings.family(runs[r]["scaling"]) for r in pack}) == 1
    assert [scalings.family(s) for s in ("one", "inv", 0.5, "bn", "skipinit")] == [
        *["plain"] * 3,
        "bn",
        "skipinit",
    ]


@pytest.mark.parametrize("grow", ["seed", "depth"])
def test_adding_a_seed_or_depth_leaves_every_existing_pack_unchanged(grow):
    config = paper_config()
    _, before = packs.training_packs(config)
    bigger = copy.deepcopy(config)
    bigger["grid"][grow].append(3 if grow == "seed" else 200)
    if grow == "seed":
        bigger["capacity"]["seed"].append(3)
    _, after = packs.training_packs(bigger)
    assert {k: after[k] for k in before} == before
    assert len(after) > len(before)


def test_member_cap_and_gpu_memory_budget_split_a_pack():
    config = paper_config()
    config["training"]["packing"].update(max_members=4)
    runs, plan = packs.training_packs(config)
    depth100 = [p for p in plan if p.startswith("cifar10-conv-n100-plain") and "-s0-" in p]
    assert [len(plan[p]) for p in sorted(depth100)] == [4, 4, 4, 1]
    # Depth 1000: ~34 GB per run (cost.member_gpu_bytes), 2 fit in 100 GB, not 3.
    deep = [p for p in plan if p.startswith("cifar10-conv-n1000-plain") and "-s0-" in p]
    assert [len(plan[p]) for p in sorted(deep)] == [2, 1]
    config["training"]["packing"].update(max_members=16, gpu_mem_gb=0.1)  # under any run
    _, plan = packs.training_packs(config)
    assert all(len(pack) == 1 for pack in plan.values())


def test_packing_off_is_one_job_per_run_named_by_its_run_id():
    config = default_config()
    config["training"]["packing"]["enabled"] = False
    runs, plan = packs.training_packs(config)
    assert plan == {run_id: [run_id] for run_id in runs}


def test_pack_job_resources_add_up_its_members():
    config = paper_config()
    runs, plan = packs.training_packs(config)
    pack = plan["cifar10-conv-n100-plain-w64-lr0.02-e30-b128-s0-p0"]
    alone = [packs.pack_resources([runs[r]], config) for r in pack]
    together = packs.pack_resources([runs[r] for r in pack], config)
    startup = 3  # cost.STARTUP_MIN, paid once per job
    assert together["runtime"] >= sum(r["runtime"] - startup for r in alone)
    assert together["runtime"] <= sum(r["runtime"] for r in alone)
    assert together["gpu"] == 1 and together["mem_mb"] >= max(r["mem_mb"] for r in alone)


# The pack jobs in the DAG (dry runs on the tiny config's finished run).


def training_jobs(jobs):
    return {rule: n for rule, n in jobs.items() if rule.startswith("train_")}


@pytest.mark.workflow
def test_adding_a_seed_plans_only_the_new_seed_packs(finished):
    config = tiny_config()
    config["grid"]["seed"].append(1)
    config["capacity"]["seed"].append(1)
    old, grown = packs.training_packs(tiny_config())[1], packs.training_packs(config)[1]
    assert {p: grown[p] for p in old} == old  # existing packs keep their members
    expected = {packs.rule_name(pack_id): 1 for pack_id in grown.keys() - old.keys()}
    assert expected
    assert training_jobs(finished.planned_jobs(config)) == expected


@pytest.mark.workflow
def test_a_deleted_run_output_retrains_its_pack_alone(finished, tmp_path):
    """A pack is one job: a missing file of one run reruns its pack's job and nothing
    else (the job recovers its finished runs instead of training them again,
    tests/test_robustness.py, tests/test_train_job.py)."""
    workflow = finished.copy_to(tmp_path)
    _, plan = packs.training_packs(tiny_config())
    pack_id = next(p for p, members in plan.items() if len(members) > 1)
    deleted = f"results/runs/{plan[pack_id][-1]}/model.pt"
    workflow.path(deleted).unlink()
    # (Asked for: Snakemake leaves a missing file alone while what it feeds is up to date.)
    jobs = workflow.planned_jobs(tiny_config(), deleted)
    assert jobs == {packs.rule_name(pack_id): 1}


# The packed loop: each member bit for bit as alone.


def assert_same_run(a, b):
    """Same metrics, history and weights, bit for bit (wall times aside); NaN (the weights
    of a diverged run, GC of an exploding one) counts as equal to NaN."""
    (metrics_a, history_a, model_a), (metrics_b, history_b, model_b) = a, b
    # repr: exact for floats (shortest round-trip form) and equal for NaN
    assert repr(without_wall_time(metrics_a, history_a)) == repr(
        without_wall_time(metrics_b, history_b)
    )
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key], rtol=0, atol=0, equal_nan=True)


SETTINGS = {**TRAIN_SETTINGS, "checkpoint_every": 1}
GC = {"every": 1, "inputs": 32, "method": "hutchinson", "probes": 2, "chunk_size": 32}
STEPS_PER_EPOCH = 11  # ceil(1347 digits in the train split / 128)


def digits_cell(scaling, seed=0, depth=3):
    return dict(dataset="digits", arch="mlp", depth=depth, scaling=scaling, seed=seed) | dict(
        width=32, lr=0.05, epochs=2, batch_size=128
    )


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    return data.Prepared(num_classes=10, **data.digits_tensors(0.25, split_seed=0))


def test_every_member_of_a_pack_ends_as_it_would_alone(digits):
    """Every family and seeds that differ: metrics, history (GC included) and weights."""
    cells = [digits_cell(s, seed) for s, seed in [("one", 0), ("inv", 1), (0.3, 0)]]
    cells += [digits_cell("bn", 2), digits_cell("skipinit", 0)]
    settings = {**SETTINGS, "gc": GC}
    packed = train_pack(cells, digits, settings)
    for cell, member in zip(cells, packed, strict=True):
        assert_same_run(member, train_run(cell, digits, settings))


def tiny_images(n_train=48, n_test=16, seed=0):
    """CIFAR-shaped uint8 images (3x8x8), stored raw, augmented on the fly."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n_train + n_test, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n_train + n_test,), generator=g)
    mean, std = torch.full((3, 1, 1), 120.0), torch.full((3, 1, 1), 60.0)
    return data.Prepared(
        x[:n_train], y[:n_train], x[n_train:], y[n_train:], 10, mean, std, augment=True
    )


def conv_cell(scaling, seed):
    return dict(dataset="cifar10", arch="conv", depth=2, scaling=scaling, seed=seed) | dict(
        width=8, lr=0.02, epochs=2, batch_size=16
    )


def test_members_get_the_batches_and_augmented_images_of_a_run_alone(monkeypatch):
    """Per member: the exact images (after crop and flip) and labels of every step."""
    images = tiny_images()
    seen = {}  # TrainStep -> [(inputs, labels)] in order
    step = train.TrainStep.__call__

    def recording(self, inputs, y):
        seen.setdefault(self, []).append((inputs.clone(), y.clone()))
        return step(self, inputs, y)

    monkeypatch.setattr(train.TrainStep, "__call__", recording)
    cells = [conv_cell("inv", 0), conv_cell("one", 1), conv_cell(0.5, 2)]
    options = {"stem_stride": 2}
    train_pack(cells, images, SETTINGS, options)
    packed = list(seen.values())
    for k, cell in enumerate(cells):
        seen.clear()
        train_run(cell, images, SETTINGS, options)
        (alone,) = seen.values()
        assert len(alone) == len(packed[k]) == 2 * 3
        for (x_pack, y_pack), (x_alone, y_alone) in zip(packed[k], alone, strict=True):
            assert torch.equal(x_pack, x_alone) and torch.equal(y_pack, y_alone)
    # The members' streams differ (seeds 0, 1, 2): the check above compares real data.
    assert not torch.equal(packed[0][0][0], packed[1][0][0])


def test_a_diverging_member_leaves_the_others_bit_identical(digits):
    """λ = 1000 overflows at once: the member is recorded diverged at the epoch and step
    of its run alone; its pack mates end exactly as alone."""
    exploding, healthy = digits_cell(1000.0, depth=8), digits_cell("inv", 1, depth=8)
    alone = train_run(exploding, digits, SETTINGS)
    # Alone, it stops at the end of its first epoch (step 2 is its first NaN loss).
    assert (alone[0]["status"], alone[0]["diverged_epoch"], alone[1]) == ("diverged", 1, [])
    packed = train_pack([exploding, healthy], digits, SETTINGS)
    assert_same_run(packed[0], alone)
    assert packed[0][0]["diverged_step"] == alone[0]["diverged_step"]
    assert packed[1][0]["status"] == "ok"
    assert_same_run(packed[1], train_run(healthy, digits, SETTINGS))


PACK = [digits_cell(1000.0, depth=8), digits_cell("inv", 1, depth=8), digits_cell(0.5, 0, 8)]


@pytest.mark.parametrize(
    "stop_step, effect",
    [
        (STEPS_PER_EPOCH + 4, "signal"),  # mid-epoch 2, member 0 diverged in epoch 1
        (4, "signal"),  # mid-epoch 1, before any divergence is known
        (STEPS_PER_EPOCH + 4, "kill"),  # resumes from the end of epoch 1
    ],
)
def test_interrupted_pack_resumes_to_the_same_result(
    digits, tmp_path, monkeypatch, stop_step, effect
):
    settings = {**SETTINGS, "gc": GC}
    uninterrupted = train_pack(PACK, digits, settings)
    stop_at_step(monkeypatch, stop_step, effect)
    with pytest.raises(checkpoint.Interrupted if effect == "signal" else Killed):
        train_pack(PACK, digits, settings, checkpoints=tmp_path)
    monkeypatch.undo()
    resumed = train_pack(PACK, digits, settings, checkpoints=tmp_path)
    assert resumed[0][0]["status"] == "diverged"
    for member, expected in zip(resumed, uninterrupted, strict=True):
        assert_same_run(member, expected)


def test_a_pack_refuses_runs_of_other_lengths(digits):
    with pytest.raises(ValueError, match="epochs, batch_size and lr"):
        train_pack([digits_cell("inv"), {**digits_cell("one"), "epochs": 3}], digits, PACKED)


# The packed backend: the members as one model, equal to runs alone up to rounding.

PACKED = {**SETTINGS, "pack_backend": "packed"}
FAMILIES = {"plain": ("inv", 0.5, "one"), "bn": ("bn",) * 3, "skipinit": ("skipinit",) * 3}


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("family", FAMILIES)
def test_packed_model_step_matches_each_member_alone(arch, family):
    """Per member: the initial weights exactly, then one step's logits, loss and every
    gradient (BatchNorm statistics too) to within float32 rounding."""
    shape, options = ((8, 8), {}) if arch == "mlp" else ((3, 8, 8), {"stem_stride": 2})
    alone = []
    for seed, scaling in enumerate(FAMILIES[family]):
        torch.manual_seed(seed)
        alone.append(models.build_model(arch, shape, 10, 8, 3, scaling, **options))
        if family == "skipinit":  # α = 0 would hide the branches from the test
            torch.nn.init.normal_(alone[-1].tower.alpha)
    model = packed.PackedResNet(alone)
    for k, member in enumerate(alone):
        state = model.member_state_dict(k)
        assert state.keys() == member.state_dict().keys()
        assert all(torch.equal(state[n], t) for n, t in member.state_dict().items())

    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, len(alone), *shape, generator=g)
    y = torch.randint(0, 10, (16, len(alone)), generator=g)
    logits = model(x)
    losses = packed.member_losses(logits, y)
    losses.sum().backward()
    for k, member in enumerate(alone):
        logits_k = member(x[:, k])
        loss_k = F.cross_entropy(logits_k, y[:, k])
        loss_k.backward()
        # Float32 rounding at the logits' scale: a logit near 0 is a difference of
        # O(scale) terms, so its own magnitude does not bound its rounding.
        scale = logits_k.abs().max().item()
        torch.testing.assert_close(logits[:, k], logits_k, rtol=1e-5, atol=1e-6 * scale)
        torch.testing.assert_close(losses[k], loss_k, rtol=1e-5, atol=0)
        grads, state = model.member_state_dict(k, grads=True), model.member_state_dict(k)
        assert grads.keys() == dict(member.named_parameters()).keys()
        for name, param in member.named_parameters():
            torch.testing.assert_close(grads[name], param.grad, rtol=1e-5, atol=1e-6, msg=name)
        for name, buffer in member.named_buffers():  # BatchNorm running statistics
            torch.testing.assert_close(state[name], buffer, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("family", FAMILIES)
def test_packed_backend_trains_each_member_as_alone_to_rounding(digits, family):
    """Two epochs: losses within 1e-4; each member's model (its model.pt) loads into the
    solo model and reproduces the test accuracy it reported."""
    cells = [digits_cell(s, seed) for seed, s in enumerate(FAMILIES[family])]
    for cell, (metrics, history, model) in zip(
        cells, train_pack(cells, digits, PACKED), strict=True
    ):
        alone_metrics, alone_history, _ = train_run(cell, digits, SETTINGS)
        assert metrics["status"] == alone_metrics["status"] == "ok"
        for row, alone_row in zip(history, alone_history, strict=True):
            for key in ("train_loss", "test_loss"):
                assert row[key] == pytest.approx(alone_row[key], rel=1e-4), key
        solo = models.build_model("mlp", digits.input_shape, 10, 32, 3, cell["scaling"])
        solo.load_state_dict(model.state_dict())
        loss, accuracy = train.evaluate(solo, digits, digits.x_test, digits.y_test, 1024)
        assert (loss, accuracy) == (metrics["test_loss"], metrics["test_acc"])


def test_packed_backend_keeps_a_diverging_member_to_itself(digits):
    """Member 1's numbers are the same, bit for bit, whether member 0 explodes or not;
    member 0 is recorded diverged where it diverges alone."""
    healthy = digits_cell("inv", 1, depth=8)
    exploding = train_pack([digits_cell(1000.0, depth=8), healthy], digits, PACKED)
    calm = train_pack([digits_cell(0.5, depth=8), healthy], digits, PACKED)
    assert_same_run(exploding[1], calm[1])
    alone = train_run(digits_cell(1000.0, depth=8), digits, SETTINGS)
    assert exploding[0][0]["status"] == "diverged" and calm[1][0]["status"] == "ok"
    for key in ("diverged_epoch", "diverged_step"):
        assert exploding[0][0][key] == alone[0][key]


def test_interrupted_packed_pack_resumes_to_the_same_result(digits, tmp_path, monkeypatch):
    settings = {**PACKED, "gc": GC}
    uninterrupted = train_pack(PACK, digits, settings)
    stop_at_step(monkeypatch, STEPS_PER_EPOCH + 4, "signal")
    with pytest.raises(checkpoint.Interrupted):
        train_pack(PACK, digits, settings, checkpoints=tmp_path)
    monkeypatch.undo()
    resumed = train_pack(PACK, digits, settings, checkpoints=tmp_path)
    for member, expected in zip(resumed, uninterrupted, strict=True):
        assert_same_run(member, expected)


def test_backend_is_result_defining_and_packing_is_not():
    training = {"momentum": 0.9, "pack_backend": "packed", "packing": {"enabled": True}}
    assert result_settings(training) == {"momentum": 0.9, "pack_backend": "packed"}
