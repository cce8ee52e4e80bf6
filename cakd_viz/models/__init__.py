"""Models: the architecture registry, checkpoints (.safetensors + .json) and model spec strings.

``load_model(spec)`` resolves a model spec (see ``MODEL_SPEC_FORMS``) into (model in eval mode, info);
``logits_of(output, who=...)`` takes the logits out of whatever a model's forward returns.
"""

from cakd_viz.models.archs import ARCHS, arch_defaults, build_arch, count_params
from cakd_viz.models.checkpoint import load_checkpoint, save_checkpoint
from cakd_viz.models.outputs import logits_of
from cakd_viz.models.specs import MODEL_SPEC_FORMS, list_sample_models, load_model, samples_dir

__all__ = [
    "ARCHS",
    "MODEL_SPEC_FORMS",
    "arch_defaults",
    "build_arch",
    "count_params",
    "list_sample_models",
    "load_checkpoint",
    "load_model",
    "logits_of",
    "samples_dir",
    "save_checkpoint",
]
