"""Multi-task optimizers behind one interface.

Each method is a factory ``name(num_tasks, **hyper_parameters)`` returning a
:class:`~autoscale_jax.base.MultiTaskTransformation`: stacked task gradients in (leading task
axis K), ``task_losses=`` (and ``key=`` for random methods) as extra arguments, one combined
update out, a NamedTuple state whose ``task_weights`` field :func:`autoscale_jax.task_weights`
reads. :func:`get` builds one from its registry name and :func:`info` says what it needs
(family, per-task gradients, key, losses, weight convention, reference).

Example:
  >>> tx = optax.chain(asj.methods.get("pcgrad", num_tasks=3), optax.adam(1e-3))
  >>> asj.methods.info("pcgrad").needs_key
  True
"""

from __future__ import annotations

from typing import Any

from autoscale_jax.base import MultiTaskTransformation
from autoscale_jax.methods._bases import GramianMethodState, Proposal
from autoscale_jax.methods._registry import MethodInfo, build, check_info, markdown_table
from autoscale_jax.methods.aligned_mtl import aligned_mtl
from autoscale_jax.methods.auto_lambda import auto_lambda
from autoscale_jax.methods.autoscale import autoscale
from autoscale_jax.methods.cagrad import cagrad
from autoscale_jax.methods.config import config
from autoscale_jax.methods.cosmos import cosmos
from autoscale_jax.methods.cr_mogm import cr_mogm
from autoscale_jax.methods.db_mtl import db_mtl
from autoscale_jax.methods.dualproj import dualproj
from autoscale_jax.methods.dwa import dynamic_weight_average
from autoscale_jax.methods.edm import edm
from autoscale_jax.methods.excess_mtl import excess_mtl
from autoscale_jax.methods.fairgrad import fairgrad
from autoscale_jax.methods.famo import famo
from autoscale_jax.methods.fixed_weights import equal_weights, fixed_weights
from autoscale_jax.methods.freeze import freeze
from autoscale_jax.methods.geometric_mean import geometric_mean
from autoscale_jax.methods.graddrop import graddrop
from autoscale_jax.methods.gradient_norm_scaling import gradient_norm_scaling
from autoscale_jax.methods.gradnorm import gradnorm
from autoscale_jax.methods.gradvac import gradvac
from autoscale_jax.methods.imtl_g import imtl_g
from autoscale_jax.methods.imtl_l import imtl_l
from autoscale_jax.methods.krum import krum
from autoscale_jax.methods.mgda import mgda
from autoscale_jax.methods.moco import moco
from autoscale_jax.methods.modo import modo
from autoscale_jax.methods.nash_mtl import nash_mtl
from autoscale_jax.methods.pbi import pbi
from autoscale_jax.methods.pcd import pcd
from autoscale_jax.methods.pcgrad import pcgrad
from autoscale_jax.methods.rlw import random_loss_weighting
from autoscale_jax.methods.scale_invariant import scale_invariant
from autoscale_jax.methods.sdmgrad import sdmgrad
from autoscale_jax.methods.stch import stch
from autoscale_jax.methods.trimmed_mean import trimmed_mean
from autoscale_jax.methods.uncertainty_weighting import uncertainty_weighting
from autoscale_jax.methods.upgrad import upgrad

_M = MethodInfo
# name, factory, family, task gradients, key, losses, weight convention, constructor, reference
_TABLE = (
    # linear scalarization, fixed or metric-chosen
    _M("autoscale", autoscale, "scalarization", True, False, True, "sum_to_k", "num_tasks",
       "Yang, Ikemura et al, AutoScale: Linear Scalarization Guided by Multi-Task Optimization "
       "Metrics, 2025 (arXiv 2508.13979)", kind="guided"),
    _M("equal_weights", equal_weights, "scalarization", False, False, False, "sum_to_k",
       "num_tasks", "uniform linear scalarization (the unitary baseline)", kind="fixed"),
    _M("fixed_weights", fixed_weights, "scalarization", False, False, False, "as_given",
       "weights", "linear scalarization with given weights", kind="fixed"),
    _M("freeze", freeze, "wrapper", True, False, True, "inherited", "method",
       "Gama & Grassi, Uniform loss vs. specialized optimization: a comparative analysis in "
       "multi-task learning, 2025 (arXiv 2505.10347)"),
    _M("cr_mogm", cr_mogm, "wrapper", True, False, False, "inherited", "method",
       "Zhou et al, On the Convergence of Stochastic Multi-Objective Gradient Manipulation and "
       "Beyond, NeurIPS 2022 (OpenReview ScwfQ7hdwyP; no arXiv id found)"),
    # loss-space: weights from losses only, one backward pass per step
    _M("cosmos", cosmos, "loss", False, False, True, "unnormalised", "num_tasks",
       "Ruchte & Grabocka, Scalable Pareto Front Approximation for Deep Multi-Objective "
       "Learning, 2021 (arXiv 2103.13392)"),
    _M("dwa", dynamic_weight_average, "loss", False, False, True, "sum_to_k", "num_tasks",
       "Liu et al, End-to-End Multi-Task Learning with Attention, 2019 (arXiv 1803.10704)"),
    _M("famo", famo, "loss", False, False, True, "sum_to_1", "num_tasks",
       "Liu et al, FAMO: Fast Adaptive Multitask Optimization, 2023 (arXiv 2306.03792)"),
    _M("geometric_mean", geometric_mean, "loss", False, False, True, "unnormalised",
       "num_tasks", "Chennupati et al, MultiNet++: Multi-Stream Feature Aggregation and "
       "Geometric Loss Strategy for Multi-Task Learning, 2019 (arXiv 1904.08492)"),
    _M("imtl_l", imtl_l, "loss", False, False, True, "unnormalised", "num_tasks",
       "Liu et al, Towards Impartial Multi-task Learning, ICLR 2021"),
    _M("pbi", pbi, "loss", False, False, True, "unnormalised", "num_tasks",
       "Zhang & Li, MOEA/D: A Multiobjective Evolutionary Algorithm Based on Decomposition, "
       "IEEE TEVC 2007 (penalty-based boundary intersection)"),
    _M("rlw", random_loss_weighting, "loss", False, True, False, "sum_to_k", "num_tasks",
       "Lin et al, Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task "
       "Learning, 2022 (arXiv 2111.10603)"),
    _M("scale_invariant", scale_invariant, "loss", False, False, True, "unnormalised",
       "num_tasks", "Navon et al, Multi-Task Learning as a Bargaining Game, 2022 "
       "(arXiv 2202.01017), its SI baseline"),
    _M("stch", stch, "loss", False, False, True, "unnormalised", "num_tasks",
       "Lin et al, Smooth Tchebycheff Scalarization for Multi-Objective Optimization, 2024 "
       "(arXiv 2402.19078)"),
    _M("uncertainty_weighting", uncertainty_weighting, "loss", False, False, True,
       "unnormalised", "num_tasks",
       "Kendall et al, Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry "
       "and Semantics, 2018 (arXiv 1705.07115)"),
    # weights from the task Gramian each step
    _M("aligned_mtl", aligned_mtl, "gramian", True, False, False, "unnormalised", "num_tasks",
       "Senushkin et al, Independent Component Alignment for Multi-Task Learning, 2023 "
       "(arXiv 2305.19000)"),
    _M("cagrad", cagrad, "gramian", True, False, False, "unnormalised", "num_tasks",
       "Liu et al, Conflict-Averse Gradient Descent for Multi-task Learning, 2021 "
       "(arXiv 2110.14048)"),
    _M("config", config, "gramian", True, False, False, "unnormalised", "num_tasks",
       "Liu, Chu & Thuerey, ConFIG: Towards Conflict-free Training of Physics Informed Neural "
       "Networks, 2024 (arXiv 2408.11104)"),
    _M("dualproj", dualproj, "gramian", True, False, False, "unnormalised", "num_tasks",
       "Quinton & Rey, Jacobian Descent for Multi-Objective Optimization, 2024 "
       "(arXiv 2406.16232)"),
    _M("edm", edm, "gramian", True, False, False, "sum_to_1", "num_tasks",
       "Katrutsa et al, Follow the bisector: a simple method for multi-objective optimization, "
       "2020 (arXiv 2007.06937)"),
    _M("fairgrad", fairgrad, "gramian", True, False, False, "unnormalised", "num_tasks",
       "Ban & Ji, Fair Resource Allocation in Multi-Task Learning, 2024 (arXiv 2402.15638)"),
    _M("gradient_norm_scaling", gradient_norm_scaling, "gramian", True, False, False,
       "unnormalised", "num_tasks",
       "Gradient-norm loss scaling for multi-task learning, 2025 (arXiv 2509.23915)",
       kind="guided"),
    _M("gradnorm", gradnorm, "gramian", True, False, True, "sum_to_k", "num_tasks",
       "Chen et al, GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep "
       "Multitask Networks, 2018 (arXiv 1711.02257)"),
    _M("imtl_g", imtl_g, "gramian", True, False, False, "sum_to_1", "num_tasks",
       "Liu et al, Towards Impartial Multi-task Learning, ICLR 2021"),
    _M("krum", krum, "gramian", True, False, False, "sum_to_1", "num_tasks",
       "Blanchard et al, Machine Learning with Adversaries: Byzantine Tolerant Gradient "
       "Descent, 2017 (arXiv 1703.02757)", min_tasks=3),
    _M("mgda", mgda, "gramian", True, False, False, "sum_to_1", "num_tasks",
       "Sener & Koltun, Multi-Task Learning as Multi-Objective Optimization, 2018 "
       "(arXiv 1810.04650)", ("representation_task_grads",)),
    _M("modo", modo, "gramian", True, False, False, "sum_to_1", "num_tasks",
       "Chen et al, Three-Way Trade-Off in Multi-Objective Learning: Optimization, "
       "Generalization and Conflict-Avoidance, 2023 (arXiv 2305.20057)", ("second_task_grads",)),
    _M("nash_mtl", nash_mtl, "gramian", True, False, False, "unnormalised", "num_tasks",
       "Navon et al, Multi-Task Learning as a Bargaining Game, 2022 (arXiv 2202.01017)"),
    _M("pcd", pcd, "gramian", True, False, False, "unnormalised", "num_tasks",
       "Varam & AlHajri, Not All Objectives Are Born Equal: Priority-Constrained Descent for "
       "Hierarchical Multi-Objective Optimization, TMLR 2026 (arXiv 2606.29521)",
       symmetric=False),
    _M("sdmgrad", sdmgrad, "gramian", True, False, False, "sum_to_1", "num_tasks",
       "Xiao et al, Direction-oriented Multi-objective Learning: Simple and Provable Stochastic "
       "Algorithms, 2023 (arXiv 2305.18409)", ("second_task_grads",)),
    _M("upgrad", upgrad, "gramian", True, False, False, "unnormalised", "num_tasks",
       "Quinton & Rey, Jacobian Descent for Multi-Objective Optimization, 2024 "
       "(arXiv 2406.16232)"),
    # gradient surgery in Gramian space with a random visiting order
    _M("gradvac", gradvac, "surgery", True, True, False, "unnormalised", "num_tasks",
       "Wang et al, Gradient Vaccine: Investigating and Improving Multi-task Optimization in "
       "Massively Multilingual Models, 2021 (arXiv 2010.05874)"),
    _M("pcgrad", pcgrad, "surgery", True, True, False, "unnormalised", "num_tasks",
       "Yu et al, Gradient Surgery for Multi-Task Learning, 2020 (arXiv 2001.06782)"),
    # element-wise on the stacked gradients
    _M("auto_lambda", auto_lambda, "elementwise", True, False, False, "unnormalised",
       "num_tasks", "Liu, James, Davison & Johns, Auto-Lambda: Disentangling Dynamic Task "
       "Relationships, TMLR 2022 (arXiv 2202.03091)", ("validation_grads",)),
    _M("db_mtl", db_mtl, "elementwise", True, False, True, "unnormalised", "num_tasks",
       "Lin et al, Dual-Balancing for Multi-Task Learning, 2023 (arXiv 2308.12029)"),
    _M("excess_mtl", excess_mtl, "elementwise", True, False, False, "sum_to_k", "num_tasks",
       "He et al, Robust Multi-Task Learning with Excess Risks, 2024 (arXiv 2402.02009)"),
    _M("trimmed_mean", trimmed_mean, "elementwise", True, False, False, "none", "num_tasks",
       "Yin et al, Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates, "
       "2018 (arXiv 1803.01498)", min_tasks=3),
    _M("moco", moco, "elementwise", True, False, False, "sum_to_1", "num_tasks",
       "Fernando et al, Mitigating Gradient Bias in Multi-objective Learning: A Provably "
       "Convergent Stochastic Approach, 2023 (arXiv 2210.12624)"),
    _M("graddrop", graddrop, "elementwise", True, True, False, "none", "num_tasks",
       "Chen et al, Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign "
       "Dropout, 2020 (arXiv 2010.06808)"),
)  # fmt: skip
_REGISTRY: dict[str, MethodInfo] = {info.name: check_info(info) for info in _TABLE}


def available() -> tuple[str, ...]:
    """The names :func:`get` accepts, sorted."""
    return tuple(sorted(_REGISTRY))


def info(name: str) -> MethodInfo:
    """The registry entry of ``name`` (family, needs, weight convention, reference).

    Raises:
      ValueError: for an unknown name (the message lists the available ones).
    """
    if name not in _REGISTRY:
        raise ValueError(f"Unknown method {name!r}; available: {', '.join(available())}.")
    return _REGISTRY[name]


def get(name: str, **kwargs: Any) -> MultiTaskTransformation:
    """Builds the method ``name`` with keyword hyper-parameters.

    ``fixed_weights`` takes ``weights=`` and ``freeze`` takes ``method=`` (another
    transformation) and ``estimation_steps=``; every other method takes ``num_tasks=``
    (see ``info(name).constructor``).

    Raises:
      ValueError: for an unknown name (the message lists the available ones).
    """
    return info(name).factory(**kwargs)


def table() -> str:
    """Every registered method as a markdown table (family, needs, weights, reference); the
    README and the docs show it."""
    return markdown_table(list(_REGISTRY.values()))


def build_for(name: str, num_tasks: int, **kwargs: Any) -> MultiTaskTransformation:
    """Builds ``name`` for ``num_tasks`` tasks whatever its constructor (see
    :func:`~autoscale_jax.methods._registry.build`): the form benchmarks use."""
    return build(info(name), num_tasks, **kwargs)


__all__ = [
    "GramianMethodState",
    "MethodInfo",
    "Proposal",
    "aligned_mtl",
    "auto_lambda",
    "autoscale",
    "available",
    "build_for",
    "cagrad",
    "config",
    "cosmos",
    "cr_mogm",
    "db_mtl",
    "dualproj",
    "dynamic_weight_average",
    "edm",
    "equal_weights",
    "excess_mtl",
    "fairgrad",
    "famo",
    "fixed_weights",
    "freeze",
    "geometric_mean",
    "get",
    "graddrop",
    "gradient_norm_scaling",
    "gradnorm",
    "gradvac",
    "imtl_g",
    "imtl_l",
    "info",
    "krum",
    "mgda",
    "moco",
    "modo",
    "nash_mtl",
    "pbi",
    "pcd",
    "pcgrad",
    "random_loss_weighting",
    "scale_invariant",
    "sdmgrad",
    "stch",
    "table",
    "trimmed_mean",
    "uncertainty_weighting",
    "upgrad",
]
