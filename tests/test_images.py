import io

import numpy as np
import pytest
from PIL import Image

from multimem.data import images


def png(img: Image.Image, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_modes_become_rgb_and_alpha_goes_on_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    assert images.decode(png(rgba)).getpixel((0, 0)) == (255, 255, 255)
    pal = Image.new("P", (4, 4))
    pal.putpalette([0, 0, 255] * 256)
    assert images.decode(png(pal)).getpixel((1, 1)) == (0, 0, 255)
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))
    assert images.decode(png(cmyk, "JPEG")).mode == "RGB"
    deep = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert images.decode(png(deep)).getpixel((0, 0)) == (255, 255, 255)


def test_bad_bytes_name_the_source():
    with pytest.raises(images.ImageError, match="a.png: empty file"):
        images.decode(b"", "a.png")
    with pytest.raises(images.ImageError, match="b.png: cannot decode"):
        images.decode(b"not an image at all", "b.png")
    with pytest.raises(images.ImageError, match="c.png: cannot decode"):
        images.decode(png(Image.new("RGB", (64, 64)))[:60], "c.png")  # truncated
    with pytest.raises(images.ImageError, match="missing.png: file not found"):
        images.open_image("missing.png")


def test_decompression_bomb_is_refused_before_decoding(monkeypatch):
    data = png(Image.new("L", (300, 300)))
    monkeypatch.setattr(images, "MAX_PIXELS", 10_000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(images.ImageError, match="big.png: .*(too large|larger than)"):
        images.decode(data, "big.png")


def test_to_tensor_shape_and_values():
    t = images.to_tensor(Image.new("RGB", (10, 20), (1, 2, 3)), 8)
    assert t.shape == (3, 8, 8) and t.dtype.is_floating_point is False
    assert t[:, 0, 0].tolist() == [1, 2, 3]
