"""A PyTorch MIMO-UNet to compare deblur_jax with. Run by hand, with PyTorch:

  python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
  /tmp/torchvenv/bin/python tests/data/pytorch_reference.py           # the test data
  /tmp/torchvenv/bin/python tests/data/pytorch_reference.py --bench   # PyTorch timings

With --bench it times the official-size models as BENCHMARKS.md compares them
with `deblur_jax.bench`: one Adam step at batch 4 x 256x256 with the official
loss, and one 1280x720 inference, each the median of several runs after a
warm-up, one JSON line per run.

The tests read the files it writes and never import torch. It writes:

  mimo_unet_tiny_legacy.pkl, mimo_unet_tiny_zip.pkl
      {'model': state_dict, 'epoch': 3} of a MIMO-UNet with base width 4 and two
      ResBlocks per level, in the legacy serialization (PyTorch <= 1.5, the one
      the official checkpoints were written with) and in the zip one (>= 1.6).
  mimo_unet_tiny_io.npz
      'input' (1, 16, 24, 3) in [0, 1] and that model's outputs 'out_4',
      'out_2', 'out_1' for it, all NHWC float32.
  tensors_legacy.pt, tensors_zip.pt, tensors.npz
      Tensors with storage offsets, strides, shared storages and several dtypes,
      in nested containers, and their values.
  other_model.pt
      The state dict of a small network that is not a MIMO-UNet.

The network below follows section 2 of REFERENCE.md, with the official
attribute names so that its state dict keys follow the official key grammar.
Its weights are random, drawn larger than PyTorch's default initialisation so
that every layer changes the outputs visibly.
"""

import collections
import datetime
import json
import pathlib
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = pathlib.Path(__file__).resolve().parent
BASE_WIDTH = 4
NUM_RES = 2
INPUT_SHAPE_NHWC = (1, 16, 24, 3)


class BasicConv(nn.Module):
  """`main` = [Conv2d or ConvTranspose2d(k=4, s=2, p=1)] + optional ReLU."""

  def __init__(self, in_channels, out_channels, kernel_size, stride=1, relu=True,
               transpose=False):
    super().__init__()
    if transpose:
      conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=stride,
                                padding=kernel_size // 2 - 1)
    else:
      conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                       padding=kernel_size // 2)
    self.main = nn.Sequential(conv, nn.ReLU()) if relu else nn.Sequential(conv)

  def forward(self, x):
    return self.main(x)


class ResBlock(nn.Module):

  def __init__(self, channels):
    super().__init__()
    self.main = nn.Sequential(BasicConv(channels, channels, 3),
                              BasicConv(channels, channels, 3, relu=False))

  def forward(self, x):
    return x + self.main(x)


class ResStack(nn.Module):
  """The official EBlock and DBlock: `layers` holds `num_res` ResBlocks."""

  def __init__(self, channels, num_res):
    super().__init__()
    self.layers = nn.Sequential(*(ResBlock(channels) for _ in range(num_res)))

  def forward(self, x):
    return self.layers(x)


class SCM(nn.Module):

  def __init__(self, planes):
    super().__init__()
    self.main = nn.Sequential(
        BasicConv(3, planes // 4, 3), BasicConv(planes // 4, planes // 2, 1),
        BasicConv(planes // 2, planes // 2, 3), BasicConv(planes // 2, planes - 3, 1))
    self.conv = BasicConv(planes, planes, 1, relu=False)

  def forward(self, rgb):
    return self.conv(torch.cat([rgb, self.main(rgb)], dim=1))


class FAM(nn.Module):

  def __init__(self, channels):
    super().__init__()
    self.merge = BasicConv(channels, channels, 3, relu=False)

  def forward(self, x1, x2):
    return x1 + self.merge(x1 * x2)


class AFF(nn.Module):

  def __init__(self, in_channels, out_channels):
    super().__init__()
    self.conv = nn.Sequential(BasicConv(in_channels, out_channels, 1),
                              BasicConv(out_channels, out_channels, 3, relu=False))

  def forward(self, a, b, c):
    return self.conv(torch.cat([a, b, c], dim=1))


def halve(x):
  return F.interpolate(x, scale_factor=0.5, mode='nearest')


def double(x):
  return F.interpolate(x, scale_factor=2, mode='nearest')


class MIMOUNet(nn.Module):
  """NCHW images in [0, 1] -> [out_4, out_2, out_1] at 1/4, 1/2 and full size."""

  def __init__(self, base_width=32, num_res=8):
    super().__init__()
    w = base_width
    self.Encoder = nn.ModuleList([ResStack(w, num_res), ResStack(2 * w, num_res),
                                  ResStack(4 * w, num_res)])
    self.feat_extract = nn.ModuleList([
        BasicConv(3, w, 3), BasicConv(w, 2 * w, 3, stride=2),
        BasicConv(2 * w, 4 * w, 3, stride=2),
        BasicConv(4 * w, 2 * w, 4, stride=2, transpose=True),
        BasicConv(2 * w, w, 4, stride=2, transpose=True),
        BasicConv(w, 3, 3, relu=False)])
    self.Decoder = nn.ModuleList([ResStack(4 * w, num_res), ResStack(2 * w, num_res),
                                  ResStack(w, num_res)])
    self.Convs = nn.ModuleList([BasicConv(4 * w, 2 * w, 1), BasicConv(2 * w, w, 1)])
    self.ConvsOut = nn.ModuleList([BasicConv(4 * w, 3, 3, relu=False),
                                   BasicConv(2 * w, 3, 3, relu=False)])
    self.AFFs = nn.ModuleList([AFF(7 * w, w), AFF(7 * w, 2 * w)])
    self.FAM1 = FAM(4 * w)
    self.SCM1 = SCM(4 * w)
    self.FAM2 = FAM(2 * w)
    self.SCM2 = SCM(2 * w)

  def forward(self, x):
    x_2 = halve(x)
    x_4 = halve(x_2)
    z2 = self.SCM2(x_2)
    z4 = self.SCM1(x_4)

    res1 = self.Encoder[0](self.feat_extract[0](x))
    z = self.FAM2(self.feat_extract[1](res1), z2)
    res2 = self.Encoder[1](z)
    z = self.FAM1(self.feat_extract[2](res2), z4)
    z = self.Encoder[2](z)

    fused2 = self.AFFs[1](halve(res1), res2, double(z))
    fused1 = self.AFFs[0](res1, double(res2), double(double(z)))

    z = self.Decoder[0](z)
    out_4 = self.ConvsOut[0](z) + x_4
    z = self.feat_extract[3](z)
    z = self.Decoder[1](self.Convs[0](torch.cat([z, fused2], dim=1)))
    out_2 = self.ConvsOut[1](z) + x_2
    z = self.feat_extract[4](z)
    z = self.Decoder[2](self.Convs[1](torch.cat([z, fused1], dim=1)))
    out_1 = self.feat_extract[5](z) + x
    return [out_4, out_2, out_1]


def randomize(model, generator):
  """LeCun-normal kernels and U(-0.1, 0.1) biases: outputs that depend on every layer."""
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.ConvTranspose2d):
        # Weight (in, out, 4, 4), stride 2: each output sees in * 4 of the taps.
        fan_in = module.weight.shape[0] * module.weight[0, 0].numel() // 4
      elif isinstance(module, nn.Conv2d):
        fan_in = module.weight[0].numel()  # weight (out, in, kh, kw)
      else:
        continue
      module.weight.normal_(0, (1 / fan_in) ** 0.5, generator=generator)
      module.bias.uniform_(-0.1, 0.1, generator=generator)


def save_both(obj, stem, suffix):
  torch.save(obj, HERE / f'{stem}_legacy{suffix}', _use_new_zipfile_serialization=False)
  torch.save(obj, HERE / f'{stem}_zip{suffix}')


def write_mimo_unet():
  generator = torch.Generator().manual_seed(0)
  model = MIMOUNet(BASE_WIDTH, NUM_RES).eval()
  randomize(model, generator)
  save_both({'model': model.state_dict(), 'epoch': 3}, 'mimo_unet_tiny', '.pkl')

  image = torch.rand(INPUT_SHAPE_NHWC, generator=generator, dtype=torch.float32)
  with torch.no_grad():
    outputs = model(image.permute(0, 3, 1, 2))
  nhwc = [o.permute(0, 2, 3, 1).numpy() for o in outputs]
  np.savez(HERE / 'mimo_unet_tiny_io.npz', input=image.numpy(), out_4=nhwc[0], out_2=nhwc[1],
           out_1=nhwc[2])
  for name, out, size in zip(('out_4', 'out_2', 'out_1'), nhwc, (4, 2, 1)):
    residual = out - image.numpy()[:, ::size, ::size]
    print(f'{name}: shape {out.shape}, mean |residual| {np.abs(residual).mean():.3f}')


def write_tensors():
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  shared = torch.arange(10, dtype=torch.int64)
  tensors = collections.OrderedDict(
      transposed=base.t(),
      offset_slice=base[1:, 2:5],
      strided=base[::2, ::3],
      shared_head=shared[:4],
      shared_tail=shared[6:],
      float16=torch.tensor([1.5, -2.25, 65504.0], dtype=torch.float16),
      float64=torch.tensor([[1e-300, 3.141592653589793]], dtype=torch.float64),
      bfloat16=torch.tensor([1.0, -0.5, 3.0e38], dtype=torch.bfloat16),
      int32=torch.tensor([-(2 ** 31), 7], dtype=torch.int32),
      int8=torch.tensor([-128, 127], dtype=torch.int8),
      uint8=torch.tensor([0, 255], dtype=torch.uint8),
      bool=torch.tensor([True, False, True]),
      scalar=torch.tensor(2.5),
      empty=torch.zeros(0, 3),
      parameter=nn.Parameter(torch.ones(2, 2)),
  )
  checkpoint = {'tensors': tensors, 'nested': [1, (2.5, 'three'), {'four': None}],
                'counter': collections.Counter({10: 1, 20: 2})}
  save_both(checkpoint, 'tensors', '.pt')
  np.savez(HERE / 'tensors.npz',
           **{k: v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
              for k, v in tensors.items()})


def write_other_model():
  torch.manual_seed(0)
  model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 1))
  torch.save(model.state_dict(), HERE / 'other_model.pt')


def official_loss(outputs, sharp):
  """Multi-scale L1 + 0.1 x L1 of the full 2-D FFTs (real and imaginary parts),
  against bilinear (non-antialiased) downsampled targets, as the official code."""
  targets = (F.interpolate(sharp, scale_factor=0.25, mode='bilinear'),
             F.interpolate(sharp, scale_factor=0.5, mode='bilinear'), sharp)
  total = 0.0
  for out, target in zip(outputs, targets):
    diff = torch.view_as_real(torch.fft.fft2(out) - torch.fft.fft2(target))
    total = total + F.l1_loss(out, target) + 0.1 * diff.abs().mean()
  return total


def _median_seconds(call, steps, warmup):
  for _ in range(warmup):
    call()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def bench(steps=3, warmup=1):
  torch.manual_seed(0)
  for name, num_res in (('mimo_unet', 8), ('mimo_unet_plus', 20)):
    model = MIMOUNet(32, num_res)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    blur, sharp = torch.rand(4, 3, 256, 256), torch.rand(4, 3, 256, 256)

    def train_step():
      optimizer.zero_grad()
      official_loss(model(blur), sharp).backward()
      optimizer.step()

    model.train()
    records = [('train', 4, 256, 256, _median_seconds(train_step, steps, warmup))]
    frame = torch.rand(1, 3, 720, 1280)
    model.eval()
    with torch.no_grad():
      records.append(('infer', 1, 720, 1280,
                      _median_seconds(lambda: model(frame), steps, warmup)))
    for what, batch, height, width, seconds in records:
      print(json.dumps({
          'what': what, 'model': name, 'params': params, 'batch': batch, 'height': height,
          'width': width, 'dtype': 'float32', 'framework': f'pytorch {torch.__version__}',
          'threads': torch.get_num_threads(), 'step_ms_median': round(1e3 * seconds, 3),
          'items_per_s': round(batch / seconds, 3),
          'date': datetime.date.today().isoformat()}), flush=True)


if __name__ == '__main__':
  if '--bench' in sys.argv[1:]:
    bench()
  else:
    write_mimo_unet()
    write_tensors()
    write_other_model()
    for path in sorted(HERE.iterdir()):
      print(f'{path.name}: {path.stat().st_size} bytes')
