"""A sentence-transformers module for exported encoders with bottleneck adapters.

Bottleneck adapters cannot be merged into the base weights (they are non-linear), so an exported
folder keeps the fp32 base and the adapter side by side: ``modules.json`` names this class, which
loads the base like ``sentence_transformers``' own ``Transformer`` and then hooks the adapter on it
(:class:`~lacos_lightning.models.adapters.BottleneckAdapters`). Loading such a folder needs this
package installed: ``SentenceTransformer(path)`` imports the class by its dotted name.
"""

from __future__ import annotations

import json
import os
from typing import Any

from sentence_transformers.models import Transformer

from lacos_lightning.models.adapters import BottleneckAdapters

SPEC_FILE = "bottleneck_adapter.json"
WEIGHTS_FILE = "bottleneck_adapter.safetensors"


class AdaptedTransformer(Transformer):
    """``Transformer`` + one active bottleneck adapter (Houlsby or Pfeiffer placement)."""

    def attach(self, spec: dict[str, Any], state: dict[str, Any]) -> None:
        """Hook the adapter described by ``spec`` with weights ``state`` onto the loaded base."""
        self.bottleneck = BottleneckAdapters(self.model)
        self.bottleneck.add("default", spec["method"], spec["targets"], spec["size"], spec["activation"], 0.0)
        self.bottleneck.load_adapter_state("default", state)
        self.bottleneck_spec = dict(spec)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> AdaptedTransformer:
        from safetensors.torch import load_file

        module = super().load(model_name_or_path, subfolder=subfolder, **kwargs)
        folder = os.path.join(model_name_or_path, subfolder)
        with open(os.path.join(folder, SPEC_FILE)) as fh:
            spec = json.load(fh)
        module.attach(spec, load_file(os.path.join(folder, WEIGHTS_FILE)))
        return module

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        from safetensors.torch import save_file

        super().save(output_path, *args, **kwargs)
        with open(os.path.join(output_path, SPEC_FILE), "w") as fh:
            json.dump(self.bottleneck_spec, fh, indent=2)
        save_file(self.bottleneck.adapter_state("default"), os.path.join(output_path, WEIGHTS_FILE))
