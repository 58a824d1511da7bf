"""The mixture hashes: weight draws, exclusion matching, identities (properties, no I/O)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from grounding_convert.mix import keys as K
from grounding_convert.schema import ImageRef, Sample


@given(st.floats(min_value=0, max_value=20, allow_nan=False), st.integers(min_value=0, max_value=2**64 - 1))
def test_copies_are_floor_or_floor_plus_one(weight: float, draw: int) -> None:
    n = K.copies(weight, draw)
    assert int(weight) <= n <= int(weight) + 1
    if weight == int(weight):
        assert n == int(weight)


def test_fractional_weight_draws_its_fraction() -> None:
    draws = [K.sample_draw(3, "vg", f"visual_genome/{i}/1") for i in range(20000)]
    kept = sum(K.copies(0.3, d) for d in draws)
    assert abs(kept - 6000) < 4 * (20000 * 0.3 * 0.7) ** 0.5
    assert [K.copies(0.3, d) for d in draws] == [K.copies(0.3, K.sample_draw(3, "vg", f"visual_genome/{i}/1"))
                                                  for i in range(20000)]  # fmt: skip


def test_exclusions_match_any_key_and_name_the_first_set() -> None:
    def sample(**keys: int) -> Sample:
        return Sample("x/1", "visual_genome", None, ImageRef("a.jpg", "1", 4, 4, keys=keys), "t")

    ex = K.Exclusions({"refcoco": frozenset({("coco", 5)}), "flickr": frozenset({("flickr", 7), ("coco", 5)})})
    assert ex.hit(sample(vg=1, coco=5, flickr=7)) == "refcoco"
    assert ex.hit(sample(vg=1, flickr=7)) == "flickr"
    assert ex.hit(sample(vg=1, flickr=5)) is None  # a number in another namespace is another photo
    assert K.Exclusions.from_dict(ex.to_dict()).sets == ex.sets


def test_image_identity_prefers_coco_then_flickr_then_vg() -> None:
    s = Sample("x/1", "visual_genome", None, ImageRef("a.jpg", "9", 4, 4, keys={"vg": 9, "flickr": 3}), "t")
    assert K.image_identity(s) == "flickr:3"
    s.image.keys = {}
    assert K.image_identity(s) == "visual_genome:9"
    assert K.normalized("  Left  MAN\n") == "left man"
