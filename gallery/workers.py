"""Which share of the missing jobs this process renders, when it is one of many.

Launchers already solve starting processes on many GPUs and machines: `accelerate launch`,
`torchrun` and Slurm's `srun` each tell a process its rank through the environment. Every
process takes the jobs whose key falls to its rank (a fixed split, so two processes never
render the same image, whatever each finds cached when it starts, and any subset of the
matrix spreads evenly); the cache's atomic writes keep their shared writes safe, and a rerun
fills any gap a failed process left.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Share:
    rank: int = 0  # this process among all of them
    world: int = 1  # how many processes there are
    local_rank: int = 0  # this process among those on its machine: its GPU

    @property
    def alone(self) -> bool:
        return self.world == 1

    def take(self, jobs: list) -> list:
        return [job for job in jobs if int(job.key[:8], 16) % self.world == self.rank]


def this_process() -> Share:
    env = os.environ
    if "WORLD_SIZE" in env:  # accelerate launch, torchrun
        return Share(int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if "SLURM_NTASKS" in env and "SLURM_PROCID" in env:  # srun python -m gallery render
        return Share(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)))
    return Share()
