"""Rotation representation, Laue operators, the symmetry-aware loss and the disorientation
metric, checked against orix and against the pattern physics itself."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from orix.crystal_map import Phase
from orix.quaternion import Misorientation, Orientation, Rotation

from diffstream.trainer.orientation import (
    disorientation_deg,
    indexed_euler,
    laue_operators,
    operator_table,
    quaternions_to_matrices,
    rotation_6d_to_matrix,
    symmetry_aware_loss,
)
from diffstream.trainer.physics.ebsd_projection import project_patterns
from diffstream.trainer.physics.geometry import EBSDGeometry
from diffstream.trainer.physics.master_pattern import kinematical_master_pattern
from diffstream.trainer.physics.sampling import random_quaternions

LAUE_GROUPS = ["m-3m", "6/mmm", "-3m", "4/mmm", "mmm", "2/m", "-1"]


def test_6d_representation_gives_proper_rotations() -> None:
    matrices = rotation_6d_to_matrix(torch.randn(64, 6, generator=torch.Generator().manual_seed(0)))
    eye = torch.eye(3).expand(64, 3, 3)
    assert torch.allclose(matrices.transpose(1, 2) @ matrices, eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(matrices), torch.ones(64), atol=1e-5)


def test_6d_of_a_rotation_matrix_returns_it() -> None:
    """The 6D code of R is its first two columns; decoding must give R back."""
    matrices = torch.tensor(quaternions_to_matrices(random_quaternions(16, 1)), dtype=torch.float32)
    code = torch.cat((matrices[:, :, 0], matrices[:, :, 1]), dim=1)
    assert torch.allclose(rotation_6d_to_matrix(code), matrices, atol=1e-6)


def test_label_matrices_are_orix_to_matrix() -> None:
    q = random_quaternions(10, 2)
    assert np.allclose(quaternions_to_matrices(q), Rotation(q).to_matrix())


@pytest.mark.parametrize("group, order", [("m-3m", 24), ("6/mmm", 12), ("-3m", 6), ("4/mmm", 8), ("mmm", 4),
                                          ("2/m", 2), ("-1", 1)])
def test_laue_operators_are_the_proper_rotations(group: str, order: int) -> None:
    ops = laue_operators(group)
    assert ops.shape == (order, 3, 3)
    assert np.allclose(ops[0], np.eye(3))
    assert np.allclose(np.linalg.det(ops), 1.0)
    products = np.einsum("aij,bjk->abik", ops, ops).reshape(-1, 9)
    assert {tuple(np.round(p, 6)) for p in products} == {tuple(np.round(o, 6)) for o in ops.reshape(-1, 9)}


def test_loss_is_zero_for_every_symmetry_equivalent_of_the_label() -> None:
    target = quaternions_to_matrices(random_quaternions(1, 3))[0]
    for group in ("m-3m", "6/mmm"):
        ops = laue_operators(group)
        predicted = torch.tensor(ops @ target, dtype=torch.float64)
        labels = torch.tensor(np.broadcast_to(target, (len(ops), 3, 3)).copy())
        table = torch.tensor(np.broadcast_to(ops, (len(ops), *ops.shape)).copy())
        assert symmetry_aware_loss(predicted, labels, table).abs().max() < 1e-12


def test_loss_is_half_one_minus_cosine_of_the_disorientation() -> None:
    """With the operators' minimum the loss is (1 − cos θ)/2 of the disorientation θ, so the
    loss and the metric agree about which prediction is better."""
    n = 200
    predicted = quaternions_to_matrices(random_quaternions(n, 4))
    target = quaternions_to_matrices(random_quaternions(n, 5))
    ops = laue_operators("6/mmm")
    table = torch.tensor(np.broadcast_to(ops, (n, *ops.shape)).copy())
    loss = symmetry_aware_loss(torch.tensor(predicted), torch.tensor(target), table).numpy()
    angle = np.radians(disorientation_deg(predicted, target, ops))
    assert np.allclose(loss, (1 - np.cos(angle)) / 2, atol=1e-12)


def test_loss_without_symmetry_tells_equivalents_apart() -> None:
    target = quaternions_to_matrices(random_quaternions(1, 6))
    fourfold = laue_operators("m-3m")[1:] @ target[0]
    ident = torch.tensor(operator_table(["-1"]))[0].expand(len(fourfold), 1, 3, 3)
    loss = symmetry_aware_loss(torch.tensor(fourfold), torch.tensor(np.repeat(target, len(fourfold), 0)), ident)
    assert (loss > 0.1).all()


def test_operator_table_pads_with_identities() -> None:
    table = operator_table(["m-3m", "6/mmm"])
    assert table.shape == (2, 24, 3, 3)
    assert np.allclose(table[1, 12:], np.eye(3))


@pytest.mark.parametrize("group", LAUE_GROUPS)
def test_disorientation_matches_orix(group: str) -> None:
    symmetry = Phase(point_group=group).point_group.laue
    a = Orientation(random_quaternions(300, 7), symmetry=symmetry)
    b = Orientation(random_quaternions(300, 8), symmetry=symmetry)
    mine = disorientation_deg(quaternions_to_matrices(a.data), quaternions_to_matrices(b.data), laue_operators(group))
    assert np.allclose(mine, a.angle_with(b, degrees=True), atol=1e-6)
    reduced = Misorientation(b * ~a, symmetry=(symmetry, symmetry)).reduce()
    assert np.allclose(mine, np.degrees(reduced.angle), atol=1e-6)


@pytest.mark.parametrize(("group", "region"), [("-3m", (360, 90, 120)), ("m-3m", (360, 90, 90)),
                                               ("6/mmm", (360, 90, 60))])
def test_indexed_euler_is_one_label_per_orientation(group: str, region: tuple[int, int, int]) -> None:
    """Paper 2's labels: every symmetry equivalent the simulator may draw is reported as the
    same Euler triplet, inside the Laue group's Euler fundamental region, and that triplet
    is an equivalent of the drawn orientation."""
    quaternions = random_quaternions(400, 11)
    ops = laue_operators(group)
    labels = indexed_euler(quaternions, group)
    assert labels.shape == (400, 3)
    assert np.all(labels >= 0) and np.all(np.degrees(labels) <= np.array(region) + 1e-9)
    back = Rotation.from_euler(labels).to_matrix()
    assert disorientation_deg(back, quaternions_to_matrices(quaternions), ops).max() < 1e-4
    equivalents = Rotation.from_matrix(ops[np.arange(400) % len(ops)] @ quaternions_to_matrices(quaternions)).data
    moved = indexed_euler(equivalents, group)
    same = np.abs((moved - labels + np.pi) % (2 * np.pi) - np.pi).max(axis=1) < 1e-6
    assert same.mean() > 0.99
    assert indexed_euler(np.zeros((0, 4)), group).shape == (0, 3)


def test_disorientation_per_sample_operators() -> None:
    q = random_quaternions(2, 9)
    table = operator_table(["m-3m", "6/mmm"])
    both = disorientation_deg(quaternions_to_matrices(q), quaternions_to_matrices(q[::-1]), table)
    singles = [disorientation_deg(quaternions_to_matrices(q[i : i + 1]), quaternions_to_matrices(q[::-1][i : i + 1]),
                                  laue_operators(g)) for i, g in enumerate(["m-3m", "6/mmm"])]
    assert np.allclose(both, np.concatenate(singles))


@pytest.mark.parametrize("phase", ["Ni", "Ti"])
def test_symmetry_equivalent_labels_give_the_same_pattern(phase: str) -> None:
    """The physics check of the convention: left-multiplying the label by a Laue operator
    (as the loss does) must leave the projected pattern unchanged. Were the operators
    applied on the wrong side, the patterns would differ. (Equivalents reach 0.94, not 1: the
    tiny master pattern's Lambert pixels resample differently where the threefold axes take
    a ray; at the default size they reach 0.99.)"""
    master = kinematical_master_pattern(phase, half_size=48)
    geometry = EBSDGeometry(shape=(40, 40), pc=(0.5, 0.5, 0.5))
    g = Rotation(random_quaternions(1, 10))
    ops = laue_operators(master.phase.point_group.name)
    equivalents = Rotation.from_matrix(ops @ g.to_matrix()[0])
    reference = project_patterns(master, g, geometry)[0].ravel()
    for pattern in project_patterns(master, equivalents, geometry):
        assert np.corrcoef(reference, pattern.ravel())[0, 1] > 0.9
    wrong_side = Rotation.from_matrix(g.to_matrix()[0] @ ops)
    mismatched = [np.corrcoef(reference, p.ravel())[0, 1] for p in project_patterns(master, wrong_side, geometry)]
    assert max(mismatched[1:]) < 0.5
