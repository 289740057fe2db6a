"""One image preprocessing: an augmented view with augmentation switched off is the clean view."""
import torch

from multimem.model import augment


def test_identity_view_is_the_clean_view():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 48, 48), dtype=torch.uint8, generator=gen)
    view = augment.apply_views(images, augment.identity_params(6), 32)
    clean = augment.clean_view(images, 32)
    assert view.shape == clean.shape == (6, 3, 32, 32)
    assert torch.allclose(view, clean, atol=1e-6)


def test_identity_view_at_the_stored_size_is_the_stored_image():
    images = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    view = augment.apply_views(images, augment.identity_params(2), 40)
    assert torch.allclose(view * 255, images.float(), atol=1e-3)


def test_crops_are_antialiased_like_the_clean_view():
    """A fine checkerboard: a view of the whole image averages it to grey, as the clean view does, instead of
    picking every other pixel (aliasing) as a direct resample to the model size would."""
    board = (torch.arange(48).view(1, 48) + torch.arange(48).view(48, 1)) % 2 * 255
    images = board.to(torch.uint8).expand(1, 3, 48, 48).contiguous()
    params = augment.identity_params(1)
    params[:, 4] = -1.0  # a flipped view: still the whole image
    view = augment.apply_views(images, params, 32)
    assert abs(float(view.mean()) - 0.5) < 0.02 and float(view.std()) < 0.2
