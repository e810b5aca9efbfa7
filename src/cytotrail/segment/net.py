"""The network: a small 2-D U-Net with two output maps.

Output channel 0 is the foreground logit; channel 1 is the logit of the scale-free
"centre-ness" map (distance to the nucleus boundary divided by that nucleus's largest
distance: 1 at the centre, falling to 0 at the edge and 0 on background).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["UNet", "FlipTTA"]


class _Block(nn.Sequential):
    def __init__(self, c_in, c_out):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net with ``depth`` resolution levels and ``base * 2**level`` channels per level.

    Input (N, in_channels, H, W) with H and W multiples of ``2**(depth-1)``; output
    (N, out_channels, H, W) logits.
    """

    def __init__(self, in_channels=1, out_channels=2, base=16, depth=4):
        super().__init__()
        self.depth = depth
        widths = [base * 2**i for i in range(depth)]
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(_Block(c, w))
            c = w
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.Conv2d(c, w, 1))
            self.merge.append(_Block(2 * w, w))
            c = w
        self.head = nn.Conv2d(c, out_channels, 1)

    @property
    def multiple(self):
        """Input height and width must be multiples of this."""
        return 2 ** (self.depth - 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


class FlipTTA(nn.Module):
    """Flip test-time augmentation: a network's logits averaged over the four flips of its input.

    Wraps a :class:`UNet` (same input and output shapes, same ``multiple``); each flipped
    output is flipped back before averaging. Costs four network passes.
    """

    def __init__(self, net):
        super().__init__()
        self.net = net

    @property
    def multiple(self):
        """Input height and width must be multiples of this."""
        return self.net.multiple

    def forward(self, x):
        out = self.net(x)
        for dims in ((-1,), (-2,), (-2, -1)):
            out = out + torch.flip(self.net(torch.flip(x, dims)), dims)
        return out / 4
