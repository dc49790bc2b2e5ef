"""DecisionModel: the Decision Transformer's tokens and head over any backbone.

Embeddings follow kzl/decision-transformer (gym/decision_transformer/models/decision_transformer.py): one
Linear each for return-to-go, state and action, a learned timestep embedding added to each token, a
LayerNorm over the embedded sequence, and the action read from the state token through Linear + tanh.
Decision Mamba kept exactly this and swapped the GPT blocks; we do the same with minRNN stacks.

Token layouts (models/layout.py, which owns everything that differs between them):
* "interleaved" (DT): (R_t, s_t, a_t) per step, 3K tokens; a_t is predicted from the s_t token.
* "fused": one token per step, R_t + s_t + a_{t-1} embeddings summed (a_{-1} = 0): 3x shorter sequences.

Recurrent acting (`step`) feeds each env step's tokens through the backbone with the state carried from the
episode start: O(1) work per environment step, and the same numbers as `forward` over the whole history. It is
the one acting path: Policy, the compiled Policy (models/step.py), rollouts and the ONNX export all call it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..choices import EMBED_INITS, TOKEN_LAYOUTS
from ..config import Config, ModelConfig
from ..data.sampler import Batch
from ..nn import Dropout
from .backbones import build_backbone, map_state
from .layout import LAYOUTS


class DecisionModel(nn.Module):
    """DT's embeddings and action head around the backbone that `cfg.backbone` names.

    DecisionModel(obs_dim, act_dim, ModelConfig(backbone="minlstm", embed_dim=64), max_ep_len=1000): the whole
    model config goes down to the backbone (as nanoGPT passes GPTConfig), so a new setting is one field."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: ModelConfig | None = None, max_ep_len: int = 1000):
        super().__init__()
        cfg = cfg or ModelConfig()
        if cfg.token_layout not in TOKEN_LAYOUTS or cfg.token_layout not in LAYOUTS:
            raise ValueError(f"unknown token layout {cfg.token_layout!r}; choose one of {', '.join(TOKEN_LAYOUTS)}")
        self.cfg = cfg
        embed_dim = cfg.embed_dim
        self.obs_dim, self.act_dim, self.max_ep_len = obs_dim, act_dim, max_ep_len
        self.token_layout = cfg.token_layout
        self.layout = LAYOUTS[cfg.token_layout]
        self.backbone_name = cfg.backbone
        self.embed_timestep = nn.Embedding(max_ep_len, embed_dim)
        self.embed_return = nn.Linear(1, embed_dim)
        self.embed_state = nn.Linear(obs_dim, embed_dim)
        self.embed_action = nn.Linear(act_dim, embed_dim)
        self.embed_ln = nn.LayerNorm(embed_dim)
        # GPT-2 drops its input embeddings; kept for every backbone
        self.embed_dropout = Dropout(cfg.dropout, cfg.dropout_impl)
        self.backbone = build_backbone(cfg)
        self.predict_action = nn.Sequential(nn.Linear(embed_dim, act_dim), nn.Tanh())
        if cfg.embed_init not in EMBED_INITS:
            raise ValueError(f"unknown embed_init {cfg.embed_init!r}; choose one of {', '.join(EMBED_INITS)}")
        if cfg.embed_init == "gpt2":
            # transformers' DecisionTransformerPreTrainedModel._init_weights and CORL's dt.py: N(0, 0.02) for
            # every Linear and Embedding, zero biases. Under torch's defaults the timestep table starts
            # N(0, 1), larger than the state embedding it is added to (docs/results.md section 5d compares the two).
            for module in (self.embed_timestep, self.embed_return, self.embed_state, self.embed_action):
                self._gpt2_init(module)
            self._gpt2_init(self.predict_action[0])

    @staticmethod
    def _gpt2_init(module: nn.Module) -> None:
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)

    @property
    def recurrent(self) -> bool:
        return self.backbone.recurrent

    # ----- training / window mode ---------------------------------------------------------------
    def tokens(self, parts: list[torch.Tensor], times: list[torch.Tensor]) -> torch.Tensor:
        """The one place tokens are made, for training (embed) and acting (act): parts[i] (B, K, D) is the i-th
        token of every step, times[i] (B, K) its timestep; each gets its timestep embedding, then the LayerNorm
        and dropout of DT's embedding. Returns (B, K * len(parts), D), the tokens of step 0, then step 1, ..."""
        x = torch.stack([part + self.embed_timestep(t) for part, t in zip(parts, times)], dim=2)
        return self.embed_dropout(self.embed_ln(x.flatten(1, 2)))

    def token(self, embedding: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """One token per env for a step-by-step caller: embedding (N, D), timestep (N,) -> (N, D)."""
        return self.tokens([embedding.unsqueeze(1)], [timestep.unsqueeze(1)])[:, 0]

    def embed(self, obs, act, rtg, timesteps, prev_act=None):
        """obs (B, K, obs_dim), act (B, K, act_dim), rtg (B, K, 1), timesteps (B, K) -> tokens (B, L, D)."""
        return self.layout.embed(self, obs, act, rtg, timesteps, prev_act)

    def forward(self, batch: Batch, state=None) -> torch.Tensor:
        """A Batch (data.sampler; obs, act, rtg, timesteps, and prev_act for the fused layout) -> predicted
        actions (B, K, act_dim)."""
        K = batch["timesteps"].shape[1]
        tokens = self.embed(batch["obs"], batch["act"], batch["rtg"], batch["timesteps"], batch.get("prev_act"))
        y, _ = self.backbone(tokens, state)
        return self.layout.actions(self, y, K)

    # ----- recurrent acting ---------------------------------------------------------------------
    def initial_state(self, n: int, device=None):
        """The backbone state before an episode's first token, for n envs, in the model's dtype."""
        dtype = self.embed_state.weight.dtype
        return map_state(lambda t: t.to(dtype), self.backbone.initial_state(n, device))

    def merge_state(self, state, fresh, keep: torch.Tensor):
        """Envs where keep (N,) is True keep `state`, the others take `fresh` (torch.where: traceable)."""
        dim = self.backbone.state_batch_dim

        def pick(old, new):
            shape = [1] * old.dim()
            shape[dim] = -1
            return torch.where(keep.view(shape), old, new)

        return map_state(pick, state, fresh)

    @torch.no_grad()  # acting, as `act` was: a caller outside inference_mode builds no graph
    def step(self, obs, rtg, timestep, prev_action, first, state):
        """One environment step for N envs, O(1): obs (N, obs_dim) normalized, rtg (N, 1) scaled, timestep (N,)
        long, prev_action (N, act_dim) (ignored where first), first (N,) bool: the env's episode starts here,
        state from initial_state or the last call. Returns (action (N, act_dim), new state).

        Envs at their first step and envs further on share the call: the layout masks what a first step lacks
        (models/layout.py) instead of branching, so the same function can be traced (compile, ONNX)."""
        if not self.recurrent:
            raise ValueError(f"the {self.backbone_name} backbone has no O(1) step; evaluate it in window mode")
        if state is None:
            state = self.initial_state(obs.shape[0], obs.device)
        timestep = timestep.clamp(max=self.max_ep_len - 1)
        y, state = self.layout.step(self, obs, rtg, timestep, prev_action, first, state)
        return self.predict_action(y), state


def build_model(cfg: Config, obs_dim: int, act_dim: int) -> DecisionModel:
    """The model a run's config describes, for data of these dims."""
    return DecisionModel(obs_dim, act_dim, cfg.model, cfg.data.max_ep_len)
