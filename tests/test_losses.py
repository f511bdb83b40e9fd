"""The contrastive losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from make_retrieval.losses import multi_positive_info_nce, symmetric_info_nce

LOG_Z = math.log(math.e + math.e**2 + 1)  # log-partition of the row [1, 2, 0]


def test_plain_info_nce() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert multi_positive_info_nce(logits, torch.eye(2)).item() == pytest.approx(expected, abs=1e-6)


def test_two_positives_average_their_log_probabilities() -> None:
    loss = multi_positive_info_nce(torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[1.0, 1.0, 0.0]]))
    assert loss.item() == pytest.approx(LOG_Z - 1.5, abs=1e-6)


def test_weighted_positive() -> None:
    loss = multi_positive_info_nce(torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[1.0, 0.5, 0.0]]))
    assert loss.item() == pytest.approx(LOG_Z - 2.0 / 1.5, abs=1e-6)


def test_excluded_column_leaves_the_denominator() -> None:
    excluded = torch.tensor([[False, True, False]])
    loss = multi_positive_info_nce(torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]), excluded)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)


def test_excluding_a_positive_keeps_it() -> None:
    excluded = torch.tensor([[True, False, False]])
    logits, positives = torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    assert multi_positive_info_nce(logits, positives, excluded).item() == pytest.approx(LOG_Z - 1.0, abs=1e-6)


def test_rows_without_positive_are_ignored_and_gradients_are_finite() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]], requires_grad=True)
    positives = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    excluded = torch.tensor([[False, True], [False, False]])
    loss = multi_positive_info_nce(logits, positives, excluded)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # row 0 alone remains, and its only rival is excluded
    assert torch.isfinite(logits.grad).all()


def test_symmetric_is_the_mean_of_both_directions() -> None:
    logits = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    row = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-2))) / 2  # rows: 2 vs 0, 3 vs 1
    col = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-3))) / 2  # columns: 2 vs 1, 3 vs 0
    assert symmetric_info_nce(logits, torch.eye(2)).item() == pytest.approx((row + col) / 2, abs=1e-6)


def test_a_fully_masked_row_gives_zero_loss_and_finite_gradients() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]], requires_grad=True)
    positives = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    excluded = torch.tensor([[False, False], [True, True]])  # row 1: every column masked, no positive
    loss = multi_positive_info_nce(logits, positives, excluded)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)
    assert torch.isfinite(logits.grad).all() and (logits.grad[1] == 0).all()


def test_symmetric_transposes_the_exclusions() -> None:
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    excluded = torch.tensor([[False, True], [False, False]])  # query 0 never competes with product 1
    rows = (0.0 + math.log(1 + math.exp(-3))) / 2  # row 0 alone in its softmax; row 1: 3 vs 0
    cols = (math.log(1 + math.exp(-2)) + 0.0) / 2  # column 0: 2 vs 0; column 1: the 1 of row 0 is excluded
    assert symmetric_info_nce(logits, torch.eye(2), excluded).item() == pytest.approx((rows + cols) / 2, abs=1e-6)


def test_pair_weights_weight_the_rows() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    first, second = math.log(1 + math.exp(-2)), math.log(1 + math.exp(-1))
    weighted = multi_positive_info_nce(logits, torch.eye(2), row_weights=torch.tensor([3.0, 1.0]))
    assert weighted.item() == pytest.approx((3 * first + second) / 4, abs=1e-6)
