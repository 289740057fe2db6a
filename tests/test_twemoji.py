from multimem.data.images import open_image
from multimem.data.sources import open_source
from multimem.data.sources.twemoji import TwemojiSource


def test_twemoji_pairs_have_images_captions_labels_and_variants():
    source = TwemojiSource()
    pairs = source.pairs()
    assert len(pairs) > 3500  # with skin-tone variants
    by_id = {p.id: p for p in pairs}
    grin = by_id["1f600"]
    assert grin.captions[0] == "grinning face"
    assert "grinning face, an emoji from smileys & emotion" in grin.captions
    assert grin.label == "Smileys & Emotion"
    img = open_image(grin.image_ref)
    assert img.mode == "RGB" and img.size == (72, 72)
    variants = [p for p in pairs if p.meta["base"] == "1f44d" and p.meta["skin_tone"]]
    assert len(variants) == 5 and all("skin tone" in p.caption for p in variants)
    assert len({p.label for p in pairs}) >= 9
    assert all(s.reason for s in source.skipped)


def test_twemoji_limit_and_spec_round_trip():
    source = TwemojiSource(skin_tones=False, limit=50)
    again = open_source(source.spec())
    assert [p.id for p in again.pairs()] == [p.id for p in source.pairs()]
    assert len(source.pairs()) == 50
