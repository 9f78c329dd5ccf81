"""Deployment of trained (and reduced) models on CPUs: a streaming decoder (one fused C++ call per
token or chunk, for a batch of streams) and ONNX export of the streaming step and the whole-sequence
forward, both in real arithmetic.

    from dssm_kernels.deploy import StreamingDecoder, export_onnx
"""
from dssm_kernels.deploy.decoder import StreamingDecoder
from dssm_kernels.deploy.plan import NetworkPlan, bytes_per_call, flops_per_token, plan_model

__all__ = ["StreamingDecoder", "NetworkPlan", "plan_model", "flops_per_token", "bytes_per_call"]
