"""Checkpoint to ONNX conversion (needs the ``train`` extra: PyTorch and onnx)."""

from tilesr.export.onnx_export import ExportReport, export_onnx

__all__ = ["ExportReport", "export_onnx"]
