"""The streaming loss against a hand computation."""

import math

import pytest
import torch

from streamvlm.model.loss import streaming_loss


def ce(logits, target):
    return math.log(sum(math.exp(v) for v in logits)) - logits[target]


def test_ce_loss_matches_hand_computation():
    # one sequence of 4 positions, vocab 3: position 0 ignored, 1 = frame decision, 2-3 = reply tokens
    rows = [[0.0, 0.0, 0.0], [2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.0, -1.0, 0.0]]
    logits = torch.tensor([rows])
    labels = torch.tensor([[-100, 0, 2, 1]])
    stream = torch.tensor([[False, True, False, False]])
    tau = 2.0
    parts = streaming_loss(logits, labels, stream, tau=tau)
    l1, l2, l3 = ce(rows[1], 0), ce(rows[2], 2), ce(rows[3], 1)
    assert parts.loss.item() == pytest.approx((tau * l1 + l2 + l3) / 3, rel=1e-6)
    assert parts.lm_loss.item() == pytest.approx((l2 + l3) / 2, rel=1e-6)
    assert parts.stream_loss.item() == pytest.approx(l1, rel=1e-6)
    assert (parts.num_lm, parts.num_stream) == (2, 1)


def test_tau_only_scales_frame_decisions():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 5)
    labels = torch.randint(0, 5, (2, 6))
    labels[0, 0] = -100
    stream = torch.zeros(2, 6, dtype=torch.bool)
    a = streaming_loss(logits, labels, stream, tau=1.0).loss
    b = streaming_loss(logits, labels, stream, tau=3.0).loss
    assert a.item() == pytest.approx(b.item())
    stream[1, 2] = True
    c = streaming_loss(logits, labels, stream, tau=3.0).loss
    assert c.item() > a.item() or c.item() < a.item()


def test_focal_and_ohem_change_only_frame_decisions():
    rows = [[2.0, 0.5, -1.0], [0.0, 1.0, 0.0], [0.1, 0.2, 0.3]]
    logits = torch.tensor([rows])
    labels = torch.tensor([[0, 0, 2]])
    stream = torch.tensor([[True, True, False]])
    l0, l1, l2 = ce(rows[0], 0), ce(rows[1], 0), ce(rows[2], 2)
    focal = streaming_loss(logits, labels, stream, tau=1.0, kind="focal", focal_gamma=2.0)
    f = lambda loss: (1 - math.exp(-loss)) ** 2 * loss
    assert focal.loss.item() == pytest.approx((f(l0) + f(l1) + l2) / 3, rel=1e-5)
    ohem = streaming_loss(logits, labels, stream, tau=1.0, kind="ohem", ohem_keep=0.5)
    assert ohem.loss.item() == pytest.approx((max(l0, l1) + l2) / 3, rel=1e-5)


def test_unknown_kind():
    with pytest.raises(ValueError, match="loss kind"):
        streaming_loss(torch.zeros(1, 1, 2), torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.bool),
                       kind="x")


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_gradient_is_finite_for_ignored_and_confident_positions(gamma):
    # position 0 ignored (ce = 0 there), position 1 a perfectly confident frame decision (p = 1):
    # (1 - p)^gamma has an infinite slope at p = 1 for gamma < 1; the gradient must stay finite
    logits = torch.tensor([[[0.0, 0.0, 0.0], [60.0, 0.0, 0.0], [0.1, 0.2, 0.3]]], requires_grad=True)
    labels = torch.tensor([[-100, 0, 2]])
    stream = torch.tensor([[False, True, False]])
    parts = streaming_loss(logits, labels, stream, kind="focal", focal_gamma=gamma)
    parts.loss.backward()
    assert torch.isfinite(parts.loss) and torch.isfinite(logits.grad).all()


def test_model_loss_is_the_one_entry_point():
    """StreamVLM.loss reads kind, tau, focal_gamma and ohem_keep from a config's loss section."""
    from streamvlm.train.config import LossSection

    from ..helpers import tiny_model

    model = tiny_model()
    ids = torch.tensor([[5, model.token_ids.frame_id, 6, model.token_ids.frame_id, 7]])
    labels = torch.tensor([[-100, 3, 4, 2, 1]])
    logits = torch.randn(1, 5, 11)
    stream = ids == model.token_ids.frame_id
    for section in (LossSection(), LossSection(kind="focal", tau=2.5, focal_gamma=1.5),
                    LossSection(kind="ohem", tau=0.5, ohem_keep=0.5)):
        got = model.loss(logits, ids, labels, section)
        want = streaming_loss(logits, labels, stream, tau=section.tau, kind=section.kind,
                              focal_gamma=section.focal_gamma, ohem_keep=section.ohem_keep)
        assert got.loss.item() == pytest.approx(want.loss.item(), rel=1e-6)
    # without a section: plain CE weighted by the model config's stream_loss_weight
    model.config.stream_loss_weight = 3.0
    want = streaming_loss(logits, labels, stream, tau=3.0)
    assert model.loss(logits, ids, labels).loss.item() == pytest.approx(want.loss.item(), rel=1e-6)
