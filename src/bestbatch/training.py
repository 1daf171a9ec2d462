"""Algorithm 1 of the paper, one epoch at a time.

In each epoch two nets start from the same parameters. `net_normal` trains as usual (SGD with
momentum and weight decay). `net_compare` stays frozen at the epoch-start parameters and, for every
fixed batch k, computes the gradient g_k of that batch's mean cross-entropy loss on exactly the same
augmented inputs; its gradients are zeroed before every batch (the paper's pseudo-code forgets
this, which would make g_k the running sum g_1 + ... + g_k). `net_compare` runs in train mode like
the paper, so each g_k uses its own batch's BatchNorm statistics; its running statistics are thrown
away with it and never reach `net_normal`.
"""

import copy
import ctypes
import platform

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .augment import batch_seed, make_batch, normalize
from .config import num_batches
from .placement import batches_of

DTYPES = {"float32": torch.float32, "float64": torch.float64}  # the config's names (its only strings)


class NonFiniteError(RuntimeError):
    pass


def pick_device(requested="auto"):
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("training.device: cuda requested but this job sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def device_description(device):
    if device.type == "cuda":
        return f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def keep_freed_memory():
    """glibc: keep freed activations in the heap; otherwise net_normal and net_compare fault each other's
    memory back in (~130k minor page faults per ResNet18 CPU batch, against none for a plain loop)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 2**31 - 1))


def set_numerics(device, allow_tf32=False, deterministic=True):
    """The gradient comparison needs stated numerics: no TF32, deterministic kernels, by default.

    bfloat16 autocast is deliberately not offered: it moves a ResNet18 gradient by ~30% relative.
    """
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic


def parameter_layout(model):
    """[(name, shape, offset)] of the flat gradient vector, in `named_parameters` order."""
    layout, offset = [], 0
    for name, p in model.named_parameters():
        layout.append((name, tuple(p.shape), offset))
        offset += p.numel()
    return layout, offset


class SGD:
    """torch.optim.SGD with momentum and weight decay (no dampening, Nesterov or maximize), the same arithmetic
    in the same order as its per-tensor path, and the same state_dict, so checkpoints load either way.

    Why not torch.optim.SGD itself: its step() imports torch._dynamo, 1.2-2 s of every training job's start on
    the machines this project runs on, for a compiler the study never uses (a third of a demo job's time).
    tests/test_optimizer.py holds it to torch.optim.SGD bit for bit, on CPU and on CUDA where there is one."""

    DEFAULTS = dict(dampening=0, nesterov=False, maximize=False, foreach=None, differentiable=False, fused=None)

    def __init__(self, params, lr, momentum, weight_decay):
        self.params = list(params)
        self.param_groups = [
            dict(lr=lr, momentum=momentum, weight_decay=weight_decay, **self.DEFAULTS, params=self.params)
        ]
        self.state = {}  # parameter index -> momentum buffer

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self):
        group = self.param_groups[0]
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            d_p = p.grad
            if weight_decay != 0:
                d_p = d_p.add(p, alpha=weight_decay)
            if momentum != 0:
                buf = self.state.get(i)
                if buf is None:
                    buf = self.state[i] = d_p.detach().clone()
                else:
                    buf.mul_(momentum).add_(d_p, alpha=1 - group["dampening"])
                d_p = buf
            p.add_(d_p, alpha=-lr)

    def state_dict(self):
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {
            "state": {i: {"momentum_buffer": buf} for i, buf in sorted(self.state.items())},
            "param_groups": [dict(group, params=list(range(len(self.params))))],
        }

    def load_state_dict(self, state_dict):
        """A state saved by this class or by torch.optim.SGD (one parameter group): its hyperparameters, and the
        momentum buffers cast to each parameter's dtype and device, as torch.optim does."""
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError(
                f"optimizer state for {[len(g['params']) for g in groups]} parameters in {len(groups)} group(s); "
                f"this network has {len(self.params)} parameters in one group"
            )
        saved = groups[0]
        if saved.get("nesterov") or saved.get("maximize") or saved.get("dampening", 0) != 0:
            raise ValueError("optimizer state with Nesterov, maximize or dampening: bestbatch's SGD has none")
        group = self.param_groups[0]
        for key in ("lr", "momentum", "weight_decay"):
            group[key] = saved[key]
        index = {position: i for i, position in enumerate(saved["params"])}
        self.state = {}
        for key, value in state_dict["state"].items():
            i = index[key]
            buf = value.get("momentum_buffer")
            if buf is not None:
                p = self.params[i]
                self.state[i] = buf.to(dtype=p.dtype, device=p.device)


def make_optimizer(model, lr, momentum, weight_decay):
    """SGD with momentum and weight decay: torch.optim.SGD's arithmetic without its start-up (class SGD)."""
    return SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def batch_gradient(net, x, y, out=None):
    """Flat gradient of the batch's mean cross-entropy loss (into `out` if given); grads are zeroed first."""
    net.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    grads = [p.grad.reshape(-1) for p in net.parameters()]
    return (torch.cat(grads) if out is None else torch.cat(grads, out=out)), loss.detach()


class KeepLast:
    """The simplest gradient sink: one buffer reused every batch and a plain float64 sum; put() keeps
    nothing (a sink that keeps rows must copy them, as ShardWriter does)."""

    def __init__(self):
        self.buffer = self.sum = None

    def row(self, k, device, dtype, numel):
        if self.buffer is None:
            self.buffer = torch.empty(numel, dtype=dtype, device=device)
        return self.buffer

    def total(self, device, numel):
        if self.sum is None:
            self.sum = torch.zeros(numel, dtype=torch.float64, device=device)
        return self.sum

    def put(self, k, g):
        pass


def run_epoch(
    net,
    optimizer,
    images,
    labels,
    order,
    *,
    epoch,
    batch_size,
    seed,
    augment,
    dtype,
    sink,
    progress=True,
    channel_stats=None,
):
    """Train `net` one epoch over the fixed batches of `order`, probing every batch's gradient (the inline
    layout: one job does both halves of Algorithm 1).

    images: (N, 3, H, W) uint8 on the device, or placement.Images wherever data.placement put them;
    labels: (N,) int64 on the device; order: (N,) int64;
    dtype: the torch dtype of both nets. `sink` receives the gradients (see KeepLast and
    shards.ShardWriter): g_k is computed into sink.row(k, device, dtype, P), added to the float64 sum
    sink.total(device, P), and handed over with sink.put(k, g_k). No batch allocates a fresh P-sized
    tensor (one of more than 32 MiB is a fresh mmap: ~11k page faults per ResNet18 batch).
    channel_stats: the normalisation's (mean, std), None for CIFAR-10's (augment.normalize).
    Returns per-batch training loss and accuracy.
    """
    return epoch_pass(
        net,
        optimizer,
        copy.deepcopy(net),
        images,
        labels,
        order,
        epoch=epoch,
        batch_size=batch_size,
        seed=seed,
        augment=augment,
        dtype=dtype,
        sink=sink,
        progress=progress,
        channel_stats=channel_stats,
    )


def train_pass(
    net, optimizer, images, labels, order, *, epoch, batch_size, seed, augment, dtype, progress=True, channel_stats=None
):
    """net_normal's half of an epoch alone (the parallel layout's train_epoch): the same steps on the same
    inputs as run_epoch, bitwise. Returns per-batch training loss and accuracy."""
    return epoch_pass(
        net,
        optimizer,
        None,
        images,
        labels,
        order,
        epoch=epoch,
        batch_size=batch_size,
        seed=seed,
        augment=augment,
        dtype=dtype,
        sink=None,
        progress=progress,
        channel_stats=channel_stats,
    )


def compare_pass(
    net_compare,
    images,
    labels,
    order,
    *,
    epoch,
    batch_size,
    seed,
    augment,
    dtype,
    sink,
    progress=True,
    channel_stats=None,
):
    """net_compare's half of an epoch alone (the parallel layout's compare_epoch): `net_compare` holds the
    epoch-start parameters (the previous epoch's checkpoint) and every g_k goes to `sink`, as in run_epoch.
    The inputs are the same (make_batch is seeded by seed, epoch and batch), so the g_k are too."""
    epoch_pass(
        None,
        None,
        net_compare,
        images,
        labels,
        order,
        epoch=epoch,
        batch_size=batch_size,
        seed=seed,
        augment=augment,
        dtype=dtype,
        sink=sink,
        progress=progress,
        channel_stats=channel_stats,
    )


def seed_forward(seed, epoch, batch):
    """Seed what a network draws in its forward pass (dropout) from (seed, epoch, batch) alone, the same for
    net_normal and net_compare on one batch: a run then recomputes bitwise from any epoch, in either layout.
    Networks that draw nothing (every built-in one) are unaffected."""
    torch.manual_seed(batch_seed(seed, epoch, batch) ^ 0x5EED5EED)


def epoch_pass(
    net,
    optimizer,
    net_compare,
    images,
    labels,
    order,
    *,
    epoch,
    batch_size,
    seed,
    augment,
    dtype,
    sink,
    progress,
    channel_stats=None,
):
    """The loop of Algorithm 1 over the fixed batches: for each batch k, net_normal's step (when `net` is
    given) and then net_compare's gradient g_k into `sink` (when `net_compare` is given), both on
    make_batch(..., channel_stats). Returns the per-batch training loss and accuracy when training, else None."""
    n_batches = num_batches(len(order), batch_size)
    # placement.Images off the device: the fixed batches are read ahead, in sequence, and gathered by host indices
    # (indices on a GPU would have to be read back, a synchronisation per batch)
    host_order = torch.as_tensor(order).cpu() if hasattr(images, "expect") else None
    if host_order is not None:
        images.expect(batches_of(host_order, batch_size))
    order = torch.as_tensor(order, device=images.device)
    for model in (net, net_compare):
        if model is not None:
            model.train()
    if net is not None:
        losses = torch.empty(n_batches, dtype=torch.float64, device=images.device)
        correct = torch.empty(n_batches, dtype=torch.float64, device=images.device)
    if net_compare is not None:
        _, n_params = parameter_layout(net_compare)
        grad_sum = sink.total(images.device, n_params)
    desc = f"epoch {epoch}" + (
        "" if net is not None and net_compare is not None else " (train)" if net else " (compare)"
    )
    for k in tqdm(range(n_batches), desc=desc, unit="batch", disable=not progress, mininterval=2):
        idx = order[k * batch_size : (k + 1) * batch_size]
        gather = idx if host_order is None else host_order[k * batch_size : (k + 1) * batch_size]
        x = make_batch(images, gather, seed, epoch, k, augment, dtype, channel_stats)
        y = labels[idx]
        if net is not None:  # net_normal: the ordinary training step
            seed_forward(seed, epoch, k)
            optimizer.zero_grad(set_to_none=True)
            out = net(x)
            loss = F.cross_entropy(out, y)
            loss.backward()
            optimizer.step()
            losses[k] = loss.detach()
            correct[k] = (out.argmax(1) == y).sum()
        if net_compare is not None:  # the gradient at the epoch-start parameters, on the same inputs
            seed_forward(seed, epoch, k)  # and the same dropout masks, if the network draws any
            g, _ = batch_gradient(net_compare, x, y, out=sink.row(k, images.device, dtype, n_params))
            grad_sum.add_(g)  # float64 running sum: the reduction then reads the shard only once
            # (a NaN or inf in some g_k is caught by the reduction, which names the batch)
            sink.put(k, g)
    if net is None:
        return None
    losses, acc = losses.cpu().numpy(), correct.cpu().numpy() / batch_size
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise NonFiniteError(
            f"non-finite training loss in epoch {epoch}, batch {int(bad[0])} (0-based, in the fixed order)"
        )
    return dict(train_loss=losses, train_acc=acc)


@torch.no_grad()
def evaluate(net, images, labels, dtype, batch_size=1000, channel_stats=None):
    """Test loss and accuracy (eval mode, no augmentation); dtype: the net's torch dtype; channel_stats: the
    training images' normalisation (augment.normalize; None: CIFAR-10's)."""
    net.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(labels), batch_size):
        x = normalize(images[i : i + batch_size], dtype, channel_stats)
        out = net(x)
        loss_sum += F.cross_entropy(out, labels[i : i + batch_size], reduction="sum").item()
        correct += (out.argmax(1) == labels[i : i + batch_size]).sum().item()
    net.train()
    return loss_sum / len(labels), correct / len(labels)
