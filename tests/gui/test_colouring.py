"""The window's colours, without Qt: incremental colouring ends where the PNG files' colouring
of the same map does, whatever the order and size of the updates."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from orix.quaternion import Rotation

from diffstream.engines.model_card import ModelClass
from diffstream.gui.colour_keys import KEY_SAMPLES, ipf_keys
from diffstream.gui.colouring import MapColours, to_uint8
from diffstream.live.map_assembler import MapAssembler
from diffstream.live.map_images import NO_ORIENTATION_RGB, NOT_RECEIVED_RGB, ipf_rgb, phase_rgb

CLASSES = (
    ModelClass("cF", "m-3m", orientation=True),
    ModelClass("tP", "4/mmm", orientation=False),
    ModelClass("hP", "6/mmm", orientation=True),
    ModelClass("cI", "432", orientation=True),
)
SHAPE = (30, 40)


def place_random(assembler: MapAssembler, indices: np.ndarray, rng: np.random.Generator) -> None:
    n = indices.size
    assembler.place(indices, rng.integers(0, len(CLASSES), n), rng.random(n), rng.random(n),
                    Rotation(rng.normal(size=(n, 4))).to_matrix())


def png_images(assembler: MapAssembler) -> tuple[np.ndarray, np.ndarray]:
    """Phase and IPF-Z images as ``phase.png`` and ``ipf_z.png`` colour the map."""
    xmap = assembler.to_crystal_map()
    received = assembler.snapshot().received
    oriented = [i for i, c in enumerate(CLASSES) if c.orientation]
    phase = phase_rgb(xmap)
    ipf = ipf_rgb(xmap, "z", oriented)
    ipf[np.isin(xmap.phase_id, [1]).reshape(SHAPE)] = NO_ORIENTATION_RGB
    for image in (phase, ipf):
        image[~received] = NOT_RECEIVED_RGB
    return to_uint8(phase), to_uint8(ipf)


def test_incremental_colouring_matches_the_png_colouring():
    rng = np.random.default_rng(5)
    assembler = MapAssembler(SHAPE, CLASSES)
    colours = MapColours(CLASSES, ipf_points_per_call=20)
    order = rng.permutation(SHAPE[0] * SHAPE[1])
    for batch in np.array_split(order[:900], 7):
        place_random(assembler, batch, rng)
        colours.update(assembler.snapshot())
        colours.colour_ipf()
    assert colours.pending > 0  # 20 points a call fall behind ~50 new indexed points of oriented classes a batch
    while colours.pending:
        colours.colour_ipf()
    phase, ipf = png_images(assembler)
    assert np.array_equal(colours.phase, phase)
    assert np.abs(colours.ipf.astype(int) - ipf).max() <= 1  # orix's float noise may round either way
    confidence = assembler.snapshot().confidence
    received = assembler.snapshot().received
    assert np.all(colours.confidence[~received] == to_uint8(NOT_RECEIVED_RGB))
    brightest = np.unravel_index(np.argmax(np.where(received, confidence, -1)), SHAPE)
    darkest = np.unravel_index(np.argmin(np.where(received, confidence, 2)), SHAPE)
    assert colours.confidence[brightest].sum() > colours.confidence[darkest].sum()  # viridis: yellow over purple


def test_a_new_scan_of_the_same_shape_is_coloured_afresh():
    rng = np.random.default_rng(6)
    first, second = MapAssembler(SHAPE, CLASSES), MapAssembler(SHAPE, CLASSES)
    everything = np.arange(SHAPE[0] * SHAPE[1])
    place_random(first, everything, rng)
    place_random(second, everything, rng)
    colours = MapColours(CLASSES, ipf_points_per_call=10_000)
    for assembler in (first, second):
        colours.update(assembler.snapshot())
        calls = 0
        while colours.pending:
            colours.colour_ipf()
            calls += 1
        assert calls == colours.laue_groups == 2  # one orix call per Laue group, taking turns
    phase, ipf = png_images(second)
    assert np.array_equal(colours.phase, phase)
    assert np.abs(colours.ipf.astype(int) - ipf).max() <= 1


def test_one_colour_key_per_laue_group_of_the_oriented_classes():
    keys = ipf_keys(CLASSES)
    assert [key.label for key in keys] == ["cF, cI (m-3m)", "hP (6/mmm)"]
    for key in keys:
        assert key.rgba.shape == (KEY_SAMPLES, KEY_SAMPLES, 4) and key.rgba.dtype == np.uint8
        inside = key.rgba[..., 3] == 255
        assert 0.2 < inside.mean() < 0.9  # a sector, transparent around it
        assert len(np.unique(key.rgba[inside][:, :3], axis=0)) > 100


def test_colouring_by_changed_rows_in_a_thread_ends_like_the_png_even_when_points_change_meanwhile():
    """The window's way: only the rows it was told changed, IPF colours from a worker thread,
    and results that replace points whose colours are still being computed."""
    rng = np.random.default_rng(7)
    assembler = MapAssembler(SHAPE, CLASSES)
    cols = SHAPE[1]
    with ThreadPoolExecutor(max_workers=1) as executor:
        colours = MapColours(CLASSES, ipf_points_per_call=40, executor=executor)
        colours.update(assembler.snapshot())  # the empty map
        for first in range(0, SHAPE[0] * cols, 150):
            batch = np.arange(first, first + 150)
            redo = rng.choice(first + 150, 20)  # some points placed again, possibly with a call in flight
            for indices in (batch, redo):
                place_random(assembler, indices, rng)
                colours.update(assembler.snapshot(), (indices.min() // cols, indices.max() // cols + 1))
                colours.colour_ipf()
        assert colours.pending > 0
        colours.finish_ipf()
    assert colours.pending == 0 and colours.received_points == SHAPE[0] * cols
    phase, ipf = png_images(assembler)
    assert np.array_equal(colours.phase, phase)
    assert np.abs(colours.ipf.astype(int) - ipf).max() <= 1


def test_rows_outside_the_span_given_are_left_for_a_later_update():
    rng = np.random.default_rng(8)
    assembler = MapAssembler(SHAPE, CLASSES)
    colours = MapColours(CLASSES)
    colours.update(assembler.snapshot())
    place_random(assembler, np.arange(0, 3 * SHAPE[1]), rng)  # rows 0-2
    assert colours.update(assembler.snapshot(), (1, 2)) == (1, 2) and colours.received_points == SHAPE[1]
    assert (colours.phase[0] == to_uint8(NOT_RECEIVED_RGB)).all()
    assert colours.update(assembler.snapshot()) == (0, 3) and colours.received_points == 3 * SHAPE[1]
    assert np.array_equal(colours.phase, png_images(assembler)[0])


def test_colouring_from_rows_snapshots_keeps_a_copy_of_the_map_equal_to_the_assembler():
    """The window's data flow: a whole snapshot first, then only the rows of each batch; the
    colouring's own arrays (its view) then hold the map, and the images match whole-map colouring."""
    rng = np.random.default_rng(9)
    assembler = MapAssembler(SHAPE, CLASSES)
    place_random(assembler, rng.permutation(SHAPE[0] * SHAPE[1])[:100], rng)
    cols = SHAPE[1]
    from_rows, from_whole = MapColours(CLASSES), MapColours(CLASSES)
    assert from_rows.view(assembler.snapshot_rows(0, 0)) is None
    assert from_rows.update_rows(assembler.snapshot_rows()) is not None
    for _ in range(6):
        indices = rng.integers(0, SHAPE[0] * cols, 80)
        place_random(assembler, indices, rng)
        part = assembler.snapshot_rows(int(indices.min()) // cols, int(indices.max()) // cols + 1)
        from_rows.update_rows(part)
        whole = assembler.snapshot()
        from_whole.update(whole)
        shown = from_rows.view(part)
        np.testing.assert_array_equal(shown.class_id, whole.class_id)
        np.testing.assert_array_equal(shown.confidence, whole.confidence)
        np.testing.assert_array_equal(shown.received, whole.received)
        np.testing.assert_array_equal(shown.quaternions[whole.received], whole.quaternions[whole.received])
        assert (shown.n_received, shown.class_fractions) == (whole.n_received, whole.class_fractions)
        assert from_rows.received_points == whole.n_received
        assert not shown.class_id.flags.writeable
    from_rows.finish_ipf()
    from_whole.finish_ipf()
    for image in ("phase", "ipf", "confidence"):
        assert np.array_equal(getattr(from_rows, image), getattr(from_whole, image)), image


def test_rows_of_a_map_of_another_shape_start_the_images_afresh():
    rng = np.random.default_rng(10)
    colours = MapColours(CLASSES)
    old = MapAssembler(SHAPE, CLASSES)
    place_random(old, np.arange(SHAPE[0] * SHAPE[1]), rng)
    colours.update_rows(old.snapshot_rows())
    new = MapAssembler((4, 5), CLASSES)
    place_random(new, np.arange(5, 10), rng)  # row 1
    assert colours.update_rows(new.snapshot_rows(1, 2)) == (1, 2)
    assert colours.phase.shape == (4, 5, 3) and colours.received_points == 5
    assert (colours.phase[[0, 2, 3]] == to_uint8(NOT_RECEIVED_RGB)).all()
