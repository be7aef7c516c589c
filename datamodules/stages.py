"""The WebDataset pipeline stages of the talking-head loader, each a plain generator over samples.

Order: EpochShards (which shards this rank and worker read this epoch) -> tar members -> samples
-> decode (corrupt ones skipped and counted) -> shuffle buffer -> audio/AU window -> exact count
(every reader yields the same number, so every DDP rank runs the same number of batches) -> batches.
"""
from __future__ import annotations

import logging
import random
from typing import Iterable, Iterator

import torch

from hm_talker.data.samples import decode_sample
from hm_talker.errors import InputError

log = logging.getLogger("hm_talker")


def rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def worker_slot() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (info.id, info.num_workers) if info else (0, 1)


def assign_shards(sizes: list[int], readers: int, order: list[int]) -> list[list[int]]:
    """Balance shards over readers (largest first, each to the least-loaded reader).

    Ties between equal-sized shards are broken by `order` (a per-epoch shuffle), so which shard a
    reader gets changes every epoch while the per-reader sample counts never do.
    """
    rank_in_order = {s: i for i, s in enumerate(order)}
    by_size = sorted(range(len(sizes)), key=lambda s: (-sizes[s], rank_in_order[s]))
    load, out = [0] * readers, [[] for _ in range(readers)]
    for s in by_size:
        r = min(range(readers), key=lambda j: (load[j], j))
        out[r].append(s)
        load[r] += sizes[s]
    return out


def reader_quota(sizes: list[int], readers: int) -> int:
    """Samples every reader yields per epoch: the smallest reader load (epoch-independent)."""
    parts = assign_shards(sizes, readers, list(range(len(sizes))))
    return min(sum(sizes[s] for s in p) for p in parts)


def reader_slot() -> tuple[int, int]:
    """(this reader's index, number of readers) over all ranks and their loader workers."""
    rank, world = rank_world()
    wid, nw = worker_slot()
    return rank * nw + wid, world * nw


class EpochShards(torch.utils.data.IterableDataset):
    """Source stage: yields {'url': shard} for this (rank, worker) in a per-epoch shuffled order.

    With `stride` (fewer shards than readers), every reader gets every shard in the same order and
    `stride_samples` keeps each reader's share of the samples instead.
    """

    def __init__(self, urls: list[str], sizes: list[int], seed: int, epoch, stride: bool = False):
        self.urls, self.sizes, self.seed, self.epoch, self.stride = urls, sizes, seed, epoch, stride

    def __iter__(self) -> Iterator[dict]:
        rank, world = rank_world()
        wid, nw = worker_slot()
        epoch = int(self.epoch.value)
        order = list(range(len(self.urls)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        if self.stride:
            for s in order:
                yield {"url": self.urls[s]}
            return
        mine = assign_shards(self.sizes, world * nw, order)[rank * nw + wid]
        random.Random(self.seed + 7919 * (epoch + 1) + rank * nw + wid).shuffle(mine)
        for s in mine:
            yield {"url": self.urls[s]}


class SeededShuffle:
    """Shuffle buffer whose random stream depends only on (seed, epoch, reader): runs reproduce and
    a resumed run sees the same order (webdataset's own shuffle seeds from the pid and the clock)."""

    def __init__(self, bufsize: int, initial: int, seed: int, epoch):
        self.bufsize, self.initial, self.seed, self.epoch = bufsize, min(initial, bufsize), seed, epoch

    def __call__(self, samples: Iterable[dict]) -> Iterator[dict]:
        me, _ = reader_slot()
        rng = random.Random((self.seed * 1_000_003 + int(self.epoch.value)) * 65_537 + me)
        buf: list[dict] = []
        for s in samples:
            buf.append(s)
            if len(buf) < max(self.initial, 1):
                continue
            if len(buf) >= self.bufsize:
                i = rng.randrange(len(buf))
                buf[i], buf[-1] = buf[-1], buf[i]
                yield buf.pop()
            elif rng.random() < 0.5:  # while filling, yield now and then so the start is not all early frames
                i = rng.randrange(len(buf))
                buf[i], buf[-1] = buf[-1], buf[i]
                yield buf.pop()
        rng.shuffle(buf)
        yield from buf


def stride_samples(samples: Iterable[dict]) -> Iterator[dict]:
    """Keep samples i with i % readers == reader (all readers see the same sample sequence)."""
    me, readers = reader_slot()
    for i, s in enumerate(samples):
        if i % readers == me:
            yield s


class CorruptCounter:
    """webdataset handler and decode guard: skip a bad sample (or shard), count it, keep going, but
    not forever: the first `warn_first` are warned about one by one, the rest are counted and
    summarised once per pass, and a pass in which more than `max_fraction` of `quota` (the samples a
    reader delivers per epoch) fail, or that ends that far short of the quota, is an InputError."""

    def __init__(self, quota: int = 0, max_fraction: float = 1.0, warn_first: int = 5, where=None):
        self.quota, self.max_fraction, self.warn_first, self.where = quota, max_fraction, warn_first, where
        self.count = 0  # failures over all passes
        self.bad = self.good = 0  # failures / good samples in the current pass
        self.last = ""

    def __call__(self, exc: Exception) -> bool:
        self.count += 1
        self.bad += 1
        self.last = str(exc)
        if self.count <= self.warn_first:
            log.warning("skipped a corrupt sample (%d so far in this reader): %s", self.count, exc)
        if self.quota and self.bad > self.max_fraction * self.quota:
            self._fail(f"more than {self.max_fraction:.0%} of an epoch's {self.quota} samples")
        return True

    def start_pass(self) -> None:
        self.bad = self.good = 0

    def end_pass(self) -> None:
        """A pass ran to its end: summarise the unwarned failures; too few good samples is an error."""
        if self.bad and self.count > self.warn_first:
            log.warning("skipped %d corrupt sample(s) in this pass of the reader (%d in all; only the first "
                        "%d are shown one by one)", self.bad, self.count, self.warn_first)
        short = self.quota - self.good
        if self.bad and (self.good == 0 or (self.quota and short > self.max_fraction * self.quota)):
            self._fail(f"{self.good} of {self.quota or 'the'} samples of an epoch were readable")

    def _fail(self, what: str):
        raise InputError(self.where, f"{self.bad} corrupt sample(s) in one epoch ({what}; limit "
                                     f"data.max_corrupt_fraction={self.max_fraction:g}); last: {self.last}; "
                                     "re-run hm-talker preprocess")


def decode(samples: Iterable[dict], counter: CorruptCounter) -> Iterator[dict]:
    counter.start_pass()
    for s in samples:
        try:
            out = decode_sample(s)
        except Exception as exc:  # any undecodable member: counted and skipped (up to the counter's limit)
            counter(ValueError(f"{s.get('__url__', '?')}:{s.get('__key__', '?')}: {exc}"))
            continue
        counter.good += 1
        yield out
    counter.end_pass()


def exact_count(samples: Iterable[dict], quota: int, reserve: int = 8) -> Iterator[dict]:
    """Yield exactly `quota` samples: stop early when there are more, and when corrupt samples left
    fewer, repeat recent good ones (a DDP rank that ran short would hang the others)."""
    recent: list[dict] = []
    n = 0
    for s in samples:
        if n == quota:
            return
        yield s
        n += 1
        recent = (recent + [s])[-reserve:]
    if n < quota and recent:
        log.warning("reader ran %d samples short (corrupt data): repeating recent samples", quota - n)
    i = 0
    while n < quota and recent:
        yield recent[i % len(recent)]
        n, i = n + 1, i + 1


def collate(samples: list[dict]) -> dict:
    out = {}
    for k in samples[0]:
        v = [s[k] for s in samples]
        out[k] = torch.stack(v) if torch.is_tensor(v[0]) else torch.tensor(v)
    return out
