"""The trained models of a dataset A, ``models/<A>/``, as the application layer applies them: the ensemble saved in
``ensemble/``, and for each of its backbones the model card (its input view: ``extract.card``) and a whole
``.keras`` file. Every check here runs without TensorFlow, before anything is computed or written."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import DataError
from data.training_videos import TrainingRecord
from ensemble.saved import SavedEnsemble
from extract.card import ModelCard, card_path, check_model_file, model_path


def refit_hint(name: str) -> str:
    return (f"refit A's models: python -m extract train --name {name} (quick when up to date), then "
            f"python -m ensemble fit --name {name}")


@dataclass(frozen=True)
class Models:
    """A's models, checked: ``cards`` holds each backbone's card, in the saved ensemble's backbone order."""

    name: str
    folder: Path
    saved: SavedEnsemble
    cards: dict[str, ModelCard]

    def model_file(self, backbone: str) -> Path:
        return model_path(self.folder, backbone)

    def spec(self, backbone: str):
        """The ``extract.settings.BackboneSpec`` of ``backbone``: the input view of its card (imports TensorFlow)."""
        from extract.settings import BackboneSpec

        card = self.cards[backbone]
        return BackboneSpec(backbone, card.input_size, card.weights, float(card.center_crop))

    def training_videos(self) -> list[TrainingRecord]:
        """The records of the videos that trained the backbones (train split) and the ensemble (blend split)."""
        return [TrainingRecord.read(folder, refit_hint(self.name)) for folder in (self.folder, self.saved.folder)]


def load_models(folder: Path) -> Models:
    """``folder`` (``models/<A>``) read and checked; a one-line error for a missing or damaged part."""
    name = folder.name
    hint = f"run 'make ensemble NAME={name}' first"
    if not folder.is_dir():
        raise DataError(f"{folder}: no models of dataset {name!r}; {hint}")
    saved = SavedEnsemble(folder / "ensemble")
    cards = {}
    for backbone in saved.backbones:
        model = model_path(folder, backbone)
        if not model.exists():
            raise DataError(f"{model}: backbone {backbone!r} of the saved ensemble not found; {hint}")
        check_model_file(model)
        card_file = card_path(folder, backbone)
        card = cards[backbone] = ModelCard.read(card_file, hint)
        if card.backbone != backbone:
            raise DataError(f"{card_file}: backbone = {card.backbone!r}, the card of another backbone; {hint}")
    return Models(name, folder, saved, cards)
