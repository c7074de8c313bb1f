"""The deployed policy: observation normalisation, the deterministic actor and the action limits in one module.

:class:`PolicyGraph` is what becomes ``model.onnx``. It takes the raw observation (physical units, as the
environment or the plant gives it) and returns the action the plant may apply:

1. normalise with the running mean/variance learnt during training (``VecNormalize``), clipped to ``±obs_clip``;
2. the actor network, copied layer by layer from the stable-baselines3 policy (:func:`actor_layers`);
3. continuous actions: in increment mode the actor's output in [-1, 1] (tanh, or clipped) is a step of at most
   the rate limit added to the previous action (read from the observation), then clipped to the bounds; else
   squashed actors (SAC, TQC, TD3) are mapped from ``tanh`` to the action bounds, unsquashed
   ones (PPO) clipped to them; when the environment has a **rate limit**, the action is also clipped to
   ``previous ± rate_limit`` where ``previous`` is read from the observation (the rate limit is a state input), and
   to the bounds again. In residual mode the actor's output in [-1, 1] times ``residual_scale`` is added to the
   command of the commissioned PID, computed in the graph from the observation alone
   (:func:`~shopfloor.control.pid.pid_command`), before the same bounds and rate limit; actor outputs within the
   dead zone count as 0 (:func:`~shopfloor.control.pid.dead_zone`), and 0 is the PID. Discrete actions: the index
   of the largest logit.

So the limits hold in the graph itself, whatever the network outputs (see the safety test), and the same graph is
evaluated, served and streamed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .pid import dead_zone, velocity_pid

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU}


def _activation_name(module: nn.Module) -> str:
    for name, cls in ACTIVATIONS.items():
        if type(module) is cls:
            return name
    raise TypeError(f"activation {type(module).__name__} is not exportable; use one of {sorted(ACTIVATIONS)}")


def actor_layers(algorithm: Any) -> tuple[list[nn.Linear], str, bool]:
    """The deterministic actor of a stable-baselines3 model: its Linear layers in order, the hidden activation and
    whether the output is tanh-squashed to [-1, 1] (then scaled to the action bounds)."""
    policy = algorithm.policy
    actor = getattr(policy, "actor", None)
    if actor is not None:  # SAC, TD3, TQC
        if hasattr(actor, "latent_pi"):
            modules, squash = [*actor.latent_pi, actor.mu], True
        else:
            modules = list(actor.mu)
            squash = isinstance(modules[-1], nn.Tanh)
            modules = modules[:-1] if squash else modules
    else:  # PPO, A2C
        modules, squash = [*policy.mlp_extractor.policy_net, policy.action_net], bool(policy.squash_output)
    linears = [m for m in modules if isinstance(m, nn.Linear)]
    hidden = [m for m in modules if not isinstance(m, nn.Linear)]
    activation = _activation_name(hidden[0]) if hidden else "tanh"
    return linears, activation, squash


def build_actor(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers of ``sizes`` (input, hidden..., output) with ``activation`` between them."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class PolicyGraph(nn.Module):
    """Raw observation -> limited action (see module docstring).

    >>> graph = PolicyGraph([3, 8, 1], "tanh", discrete=False, squash=True, previous_action_index=2)
    >>> graph(torch.zeros(4, 3)).shape
    torch.Size([4, 1])
    """

    def __init__(self, sizes: list[int], activation: str, discrete: bool, squash: bool,
                 previous_action_index: int | None = None, increment: bool = False,
                 residual: dict[str, Any] | None = None):
        super().__init__()
        self.pid_indices = dict(residual["indices"]) if residual else None  # observation index of each PID input
        self.dead_zone = float(residual.get("dead_zone", 0.0)) if residual else 0.0
        self.register_buffer("pid_gains", torch.tensor([residual[k] for k in ("kc", "ti", "td", "dt", "scale")]
                                                       if residual else [0.0] * 5, dtype=torch.float32))
        self.discrete, self.squash, self.increment = bool(discrete), bool(squash), bool(increment)
        self.previous_action_index = previous_action_index
        obs_dim, act_dim = sizes[0], (1 if discrete else sizes[-1])
        self.actor = build_actor(sizes, activation)
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.register_buffer("obs_clip", torch.tensor(10.0))
        self.register_buffer("action_low", -torch.ones(act_dim))
        self.register_buffer("action_high", torch.ones(act_dim))
        self.register_buffer("rate_limit", torch.zeros(act_dim))

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        z = (observation - self.obs_mean) / self.obs_std
        z = torch.maximum(torch.minimum(z, self.obs_clip), -self.obs_clip)
        out = self.actor(z)
        if self.discrete:
            return out.argmax(dim=-1)
        low, high = self.action_low, self.action_high
        if self.increment and self.previous_action_index is not None:  # a step of at most the rate limit
            i = self.previous_action_index
            step = torch.tanh(out) if self.squash else torch.clamp(out, -1.0, 1.0)
            action = observation[:, i:i + step.shape[-1]] + self.rate_limit * step
            return torch.maximum(torch.minimum(action, high), low)
        if self.pid_indices is not None:  # residual on the PID's command
            step = dead_zone(torch.tanh(out) if self.squash else torch.clamp(out, -1.0, 1.0), self.dead_zone)
            action = torch.maximum(torch.minimum(self.pid(observation) + self.pid_gains[4] * step, high), low)
        elif self.squash:
            action = low + 0.5 * (torch.tanh(out) + 1.0) * (high - low)
        else:
            action = torch.maximum(torch.minimum(out, high), low)
        if self.previous_action_index is not None:
            i = self.previous_action_index
            previous = observation[:, i:i + action.shape[-1]]
            action = torch.maximum(torch.minimum(action, previous + self.rate_limit), previous - self.rate_limit)
            action = torch.maximum(torch.minimum(action, high), low)
        return action

    def pid(self, observation: torch.Tensor) -> torch.Tensor:
        """The commissioned PID's command ``(batch, 1)`` (:func:`shopfloor.control.pid.velocity_pid`)."""
        at = {name: observation[:, i:i + 1] for name, i in self.pid_indices.items()}
        return velocity_pid(at, *self.pid_gains[:4])


def copy_actor(graph: PolicyGraph, linears: list[nn.Linear]) -> None:
    """Copy the stable-baselines3 actor's Linear layers into ``graph.actor``."""
    targets = [m for m in graph.actor if isinstance(m, nn.Linear)]
    if len(targets) != len(linears):
        raise ValueError(f"actor has {len(linears)} Linear layers, the graph {len(targets)}")
    with torch.no_grad():
        for target, source in zip(targets, linears):
            target.weight.copy_(source.weight.detach().cpu())
            target.bias.copy_(source.bias.detach().cpu())


__all__ = ["PolicyGraph", "actor_layers", "build_actor", "copy_actor"]
