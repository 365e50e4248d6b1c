"""``MBPOSchedule``: MBPO's schedule in real env steps, in one place (the ``loop:`` section).

When the model is trained, how long rollouts are, how many start from real states and how much model data is kept:
the env loop reads the first two, the DataModule sizes its model buffer from the last two. Every figure counts
*global* env steps (under DDP each process's step counts once per process).
"""

from __future__ import annotations

from dataclasses import dataclass

from mbpo_pl.errors import ConfigError, require_positive


def rollout_length(epoch: int, min_epoch: int, max_epoch: int, min_length: int, max_length: int) -> int:
    """Truncated-linear schedule of the official code: ``min_length`` up to ``min_epoch``, then linear up to
    ``max_length`` at ``max_epoch``, constant after; truncated to an int. ``epoch`` counts env steps / epoch_length.
    """
    if epoch <= min_epoch:
        return int(min_length)
    progress = min((epoch - min_epoch) / max(max_epoch - min_epoch, 1), 1.0)
    return int(min_length + progress * (max_length - min_length))


def model_buffer_capacity(
    rollout_length: int, rollout_batch_size: int, epoch_length: int, retain_epochs: int, env_steps_per_rollout: int
) -> int:
    """Model transitions to retain (the official code's formula): ``retain_epochs`` schedule epochs of rollout
    batches, each ``rollout_length * rollout_batch_size`` transitions at most. ``env_steps_per_rollout`` is the
    global env steps between two rollout batches of one process (``model_train_freq * processes``); at least one
    batch per epoch is kept."""
    batches_per_epoch = max(epoch_length // env_steps_per_rollout, 1)
    return retain_epochs * rollout_length * rollout_batch_size * batches_per_epoch


@dataclass(frozen=True)
class MBPOSchedule:
    """MBPO's schedule (MBPO Alg. 2 with the official code's settings).

    Attributes:
        init_random_steps: uniform-random env steps before training starts.
        model_train_freq: env steps of one process between two model trainings (= one Lightning epoch).
        rollout_batch_size: real start states per rollout batch.
        rollout_schedule: ``(min_epoch, max_epoch, min_length, max_length)`` of the truncated-linear schedule of
            the rollout length ``k``; epochs count ``epoch_length`` env steps after the random steps.
        epoch_length: env steps per schedule epoch (the paper's epoch: 1000; 250 for the pendulums).
        retain_epochs: schedule epochs of rollouts the model buffer retains.
    """

    init_random_steps: int
    model_train_freq: int
    rollout_batch_size: int
    rollout_schedule: tuple[int, int, int, int]
    epoch_length: int
    retain_epochs: int

    def __post_init__(self) -> None:
        if len(self.rollout_schedule) != 4:
            raise ConfigError(
                f"rollout_schedule must be [min_epoch, max_epoch, min_k, max_k], got {list(self.rollout_schedule)}"
            )
        if min(self.rollout_schedule[2:]) < 1:
            raise ConfigError(f"rollout lengths must be >= 1, got rollout_schedule={list(self.rollout_schedule)}")
        require_positive("loop", model_train_freq=self.model_train_freq, rollout_batch_size=self.rollout_batch_size,
                         epoch_length=self.epoch_length, retain_epochs=self.retain_epochs)  # fmt: skip
        if self.init_random_steps < 0:
            raise ConfigError(f"loop.init_random_steps={self.init_random_steps} must be >= 0.")

    @property
    def max_rollout_length(self) -> int:
        return self.rollout_schedule[3]

    def rollout_length(self, env_steps: int) -> int:
        """``k`` for a rollout made after ``env_steps`` global env steps."""
        epoch = max(env_steps - self.init_random_steps, 0) // self.epoch_length
        return rollout_length(epoch, *self.rollout_schedule)

    def model_buffer_capacity(self, rollout_length: int, processes: int = 1) -> int:
        """Model transitions each process keeps for rollouts of length ``rollout_length`` when ``processes`` train."""
        return model_buffer_capacity(rollout_length, self.rollout_batch_size, self.epoch_length, self.retain_epochs,
                                     self.model_train_freq * processes)  # fmt: skip
