"""densecore.integrations.lightning: selection rounds inside a tiny LightningModule on CPU.

One process; a crash in the middle of a round and a resume from the checkpoint; two DDP
ranks on gloo (a subprocess that runs this file as a script).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import densecore

pytest.importorskip("lightning")
import lightning.pytorch as pl  # noqa: E402

from densecore.integrations.lightning import SelectionRounds  # noqa: E402

IDS = [f"city_{i:06d}_000019_leftImg8bit" for i in range(5)]
H, W, C, D = 12, 16, 3, 6
ROUNDS_AT, BUDGET, MAX_STEPS = [2, 4], 4, 6


def target_data():
    """Images, labels (some void) and densities of the target, deterministic."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(len(IDS), 3, H, W, generator=g)
    labels = torch.randint(0, C, (len(IDS), H, W), generator=g)
    labels[:, 0] = 255
    densities = torch.rand(len(IDS), H // 2, W // 2, generator=g) * 3 + 0.2
    return images, labels, densities


class TinySeg(pl.LightningModule):
    """Trains on the target labels the state holds; gives selection outputs in batches of 2."""

    def __init__(self, state_root, crash_in_round=None):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Conv2d(3, D, 3, stride=2, padding=1)
        self.head = torch.nn.Conv2d(D, C, 1)
        self.state_root = state_root
        self.crash_in_round = crash_in_round
        self.images, self.labels, self.densities = target_data()
        self.calls, self.outputs, self.seen, self.ended = [], [], [], []

    def forward(self, x):
        f = torch.relu(self.net(x))
        return f, F.interpolate(self.head(f), (H, W), mode="bilinear", align_corners=False)

    def training_step(self, batch, batch_idx):
        (idx,) = batch
        state = densecore.ActiveLabelState(self.state_root)  # read-only, as a loader would
        y = torch.stack([torch.from_numpy(state.labels(IDS[i]).astype(np.int64))
                         for i in idx.tolist()])
        self.seen.append((self.global_step, int(sum(state.labeled(i).sum() for i in IDS))))
        _, logits = self(self.images[idx])
        if (y != 255).any():
            return F.cross_entropy(logits, y, ignore_index=255)
        return 0.0 * logits.sum()

    def selection_outputs(self, image_ids, round):
        assert not self.training and not torch.is_grad_enabled()
        self.calls.append((round, self.global_step, list(image_ids)))
        for start in range(0, len(image_ids), 2):
            if round == self.crash_in_round and start > 0:
                raise RuntimeError("simulated crash")
            chunk = image_ids[start:start + 2]
            idx = [IDS.index(i) for i in chunk]
            f, logits = self(self.images[idx])
            out = {"image_ids": chunk, "probs": logits.softmax(1), "features": f,
                   "densities": self.densities[idx], "labels": self.labels[idx]}
            self.outputs.append((round, {k: v.clone() if torch.is_tensor(v) else v
                                         for k, v in out.items()}))
            yield out

    def on_selection_round_end(self, round, state):
        self.ended.append((round, self.global_step, self.training,
                           all(state.round_done(i, round) for i in IDS)))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        idx = torch.arange(len(IDS))
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(idx), batch_size=2,
                                           shuffle=False)


def trainer(root, callbacks, **kw):
    return pl.Trainer(max_steps=MAX_STEPS, accelerator="cpu", logger=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=str(root), callbacks=callbacks, **kw)


def test_rounds_at_their_steps_with_the_callers_outputs(tmp_path, monkeypatch):
    from densecore.samplers import paper

    pools, real = [], paper.farthest_first_batch

    def spy(features, lengths, *a, **k):
        pools.append(len(lengths))
        return real(features, lengths, *a, **k)

    monkeypatch.setattr(paper, "farthest_first_batch", spy)
    root = tmp_path / "labels"
    state = densecore.ActiveLabelState(root, IDS, (H, W))
    model = TinySeg(str(root))
    rounds = SelectionRounds(state, ROUNDS_AT, BUDGET, alpha=5, seed=3)
    trainer(tmp_path, [rounds], enable_checkpointing=False, devices=1).fit(model)
    assert pools == [2, 2, 1, 2, 2, 1]  # one batched selection per yielded batch

    assert [(r, s) for r, s, _ in model.calls] == [(0, 2), (1, 4)]
    assert all(ids == IDS for _, _, ids in model.calls)
    assert model.ended == [(0, 2, True, True), (1, 4, True, True)]  # train mode restored
    summary = state.summary()
    assert [(r["round"], r["images"], r["queried"]) for r in summary["rounds"]] == \
        [(0, 5, 5 * BUDGET), (1, 5, 5 * BUDGET)]
    assert summary["labeled"] == 2 * 5 * BUDGET
    # training saw no labels before step 2, round 0's from step 2, both rounds' from step 4
    assert [n for s, n in model.seen] == [0, 0, 5 * BUDGET, 5 * BUDGET, 10 * BUDGET,
                                          10 * BUDGET]
    # the callback recorded exactly what query_round makes of the same outputs
    replay = densecore.ActiveLabelState(tmp_path / "replay", IDS, (H, W))
    for r, out in model.outputs:
        densecore.query_round(replay, r, out["image_ids"], out["probs"], out["features"],
                              out["densities"], BUDGET, labels=out["labels"], alpha=5, seed=3)
    for i in IDS:
        for r in (0, 1):
            assert np.array_equal(replay.queried(i, r), state.queried(i, r))
        assert np.array_equal(replay.labels(i), state.labels(i))
    assert rounds.done == 2 and "done=2" in repr(rounds)


def test_outputs_callable_and_sampler_option(tmp_path):
    images, labels, densities = target_data()
    calls = []

    def outputs(module, image_ids, round):
        calls.append(round)
        idx = [IDS.index(i) for i in image_ids]
        f, logits = module(images[idx])
        yield {"image_ids": image_ids, "probs": logits.softmax(1), "features": f,
               "labels": labels[idx]}

    state = densecore.ActiveLabelState(tmp_path / "labels", IDS, (H, W))
    rounds = SelectionRounds(state, [1], 2, outputs=outputs, alpha=3,
                             sampler=densecore.KCenterGreedy(seed=0))  # needs no densities
    trainer(tmp_path, [rounds], enable_checkpointing=False, devices=1).fit(
        TinySeg(str(tmp_path / "labels")))
    assert calls == [0]
    assert [state.queried(i, 0).sum() for i in IDS] == [2] * 5


def test_checks(tmp_path):
    state = densecore.ActiveLabelState(tmp_path / "labels", IDS, (H, W))
    with pytest.raises(ValueError, match="rounds_at"):
        SelectionRounds(state, [4, 2], 1)
    with pytest.raises(ValueError, match="rounds_at"):
        SelectionRounds(state, [], 1)
    with pytest.raises(ValueError, match="budget"):
        SelectionRounds(state, [1], -1)
    with pytest.raises(TypeError, match="state"):
        SelectionRounds(str(tmp_path), [1], 1)
    with pytest.raises(TypeError, match="outputs"):
        SelectionRounds(state, [1], 1, outputs=3)
    # strategy="ddp_spawn" pickles callbacks: the copy opens the same state
    copy = pickle.loads(pickle.dumps(SelectionRounds(state, [1, 5], 2, alpha=3)))
    assert copy.state.root == state.root and copy.state.image_ids == IDS
    assert copy.rounds_at == [1, 5] and copy.options["alpha"] == 3

    class NoHook(TinySeg):
        selection_outputs = None

    with pytest.raises(TypeError, match="selection_outputs"):
        trainer(tmp_path, [SelectionRounds(state, [1], 1)], enable_checkpointing=False,
                devices=1).fit(NoHook(str(tmp_path / "labels")))

    def wrong_ids(module, image_ids, round):
        yield {"image_ids": ["somewhere_else"], "probs": None, "features": None}

    with pytest.raises(ValueError, match="not requested"):
        trainer(tmp_path, [SelectionRounds(state, [1], 1, outputs=wrong_ids)],
                enable_checkpointing=False, devices=1).fit(TinySeg(str(tmp_path / "labels")))

    def no_probs(module, image_ids, round):
        yield {"image_ids": image_ids, "features": None}

    with pytest.raises(ValueError, match="'probs' is missing"):
        trainer(tmp_path, [SelectionRounds(state, [1], 1, outputs=no_probs)],
                enable_checkpointing=False, devices=1).fit(TinySeg(str(tmp_path / "labels")))

    def too_few(module, image_ids, round):
        return []

    with pytest.raises(ValueError, match="no outputs"):
        trainer(tmp_path, [SelectionRounds(state, [1], 1, outputs=too_few)],
                enable_checkpointing=False, devices=1).fit(TinySeg(str(tmp_path / "labels")))


def test_resume_after_a_crash_in_the_middle_of_a_round(tmp_path):
    root = tmp_path / "labels"
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1,
                                        save_last=True, save_top_k=0)
    model = TinySeg(str(root), crash_in_round=1)
    state = densecore.ActiveLabelState(root, IDS, (H, W))
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer(tmp_path, [SelectionRounds(state, ROUNDS_AT, BUDGET, alpha=5), ckpt],
                devices=1).fit(model)
    assert [(r, s) for r, s, _ in model.calls] == [(0, 2), (1, 4)]
    done_1 = [i for i in IDS if state.round_done(i, 1)]
    assert done_1 == IDS[:2]  # the first batch of round 1 is on disk
    files = {(i, r): os.stat(state.mask_path(i, r)).st_mtime_ns
             for i in IDS for r in (0, 1) if state.round_done(i, r)}

    # a new process: new module, new state object, the last checkpoint (global step 4)
    state2 = densecore.ActiveLabelState(root, IDS, (H, W))
    model2 = TinySeg(str(root))
    ckpt2 = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt2")
    trainer(tmp_path, [SelectionRounds(state2, ROUNDS_AT, BUDGET, alpha=5), ckpt2],
            devices=1).fit(model2, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    # round 0 is not redone; round 1 only for the images it lacked
    assert [(r, s, ids) for r, s, ids in model2.calls] == [(1, 4, IDS[2:])]
    for key, mtime in files.items():
        assert os.stat(state2.mask_path(*key)).st_mtime_ns == mtime
    summary = state2.summary()
    assert [(r["round"], r["images"]) for r in summary["rounds"]] == [(0, 5), (1, 5)]
    assert summary["labeled"] == 2 * 5 * BUDGET


DDP_SECONDS = 240


def test_two_ddp_ranks_on_gloo(tmp_path):
    """strategy="ddp" on 2 CPU processes: each rank selects its own images, every image is
    written once, and every rank trains on the whole round right after it."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "src"),
         os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, __file__, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=DDP_SECONDS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.load(open(tmp_path / f"rank{k}.json")) for k in (0, 1)]
    for r in (0, 1):
        got = [ranks[k]["calls"] for k in (0, 1)]
        per_rank = [sorted(i for rr, _, ids in calls if rr == r for i in ids) for calls in got]
        assert per_rank[0] == sorted(IDS[0::2]) and per_rank[1] == sorted(IDS[1::2])
    state = densecore.ActiveLabelState(tmp_path / "labels")
    summary = state.summary()
    assert [(r["round"], r["images"], r["queried"]) for r in summary["rounds"]] == \
        [(0, 5, 5 * BUDGET), (1, 5, 5 * BUDGET)]
    for k in (0, 1):  # both ranks trained on each whole round from its step on
        seen = dict(map(tuple, ranks[k]["seen"]))
        assert seen[0] == 0 and seen[2] == 5 * BUDGET and seen[4] == 10 * BUDGET, seen


def test_lightning_is_imported_only_by_its_module_and_named_when_missing():
    code = ("import sys, densecore\n"
            "from densecore.integrations import ripu\n"
            "assert not any(m.split('.')[0] in ('lightning', 'pytorch_lightning') "
            "for m in sys.modules), 'imported lightning'\n"
            "sys.modules['lightning'] = None  # as if not installed\n"
            "try:\n"
            "    import densecore.integrations.lightning\n"
            "except ImportError as e:\n"
            "    print(e)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "src"),
         os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == ('densecore.integrations.lightning needs lightning: '
                                   'pip install "densecore-seg[lightning]"')


def _ddp_main(out):  # pragma: no cover - runs in the subprocesses
    root = os.path.join(out, "labels")
    state = densecore.ActiveLabelState(root, IDS, (H, W))
    model = TinySeg(root)
    t = trainer(out, [SelectionRounds(state, ROUNDS_AT, BUDGET, alpha=5)],
                enable_checkpointing=False, strategy="ddp", devices=2)
    t.fit(model)
    with open(os.path.join(out, f"rank{t.global_rank}.json"), "w") as f:
        json.dump({"calls": model.calls, "seen": model.seen}, f)


if __name__ == "__main__":  # pragma: no cover
    torch.set_num_threads(1)
    _ddp_main(sys.argv[1])

