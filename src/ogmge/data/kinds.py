"""Modality kinds and :class:`ModalitySpec` -- re-exported from :mod:`ogmge.contracts`,
where they live now (the bottom layer, so that models need not import ``ogmge.data``)."""

from ..contracts import KINDS, ModalitySpec

__all__ = ["KINDS", "ModalitySpec"]
