"""Batch data augmentation that runs where the batch lives (GPU or CPU).

The usual CIFAR recipe (random crop after 4-pixel zero padding, random horizontal flip)
done per image in Python would starve a GPU; here one gather builds the whole augmented
batch. Randomness comes from an explicit ``torch.Generator``, so a seed fixes the result.
"""

import torch
import torch.nn.functional as F


def random_crop_flip(images, generator, padding=4):
    """Randomly crop (after zero-padding by ``padding``) and mirror every image of a batch.

    ``images`` is N×C×H×W of any dtype (uint8 is cheapest: augment before normalising);
    ``generator`` lives on the device that draws the offsets. Returns a new N×C×H×W tensor.
    """
    n, c, h, w = images.shape
    draw = {"generator": generator, "device": generator.device}
    top = torch.randint(0, 2 * padding + 1, (n, 1), **draw).to(images.device)
    left = torch.randint(0, 2 * padding + 1, (n, 1), **draw).to(images.device)
    flip = torch.rand((n, 1), **draw).to(images.device) < 0.5

    padded = F.pad(images, (padding, padding, padding, padding))
    rows = top + torch.arange(h, device=images.device)  # n×h rows of the padded image
    cols = torch.arange(w, device=images.device)
    cols = left + torch.where(flip, cols.flip(0), cols)  # n×w, mirrored where flip
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
