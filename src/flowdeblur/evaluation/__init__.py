"""Evaluation: metrics, dataset protocols, flow end-point error and the classical baseline.

Modules: ``metrics`` (PSNR, SSIM, temporal error, 8-bit quantisation), ``protocols``
(:func:`~flowdeblur.evaluation.protocols.evaluate_model` on a dataset under the release, all
or su30 protocol; :func:`~flowdeblur.evaluation.protocols.evaluate_folders` on written
images), ``flow_epe`` (the flow network's end-point error on held-out synthetic scenes and a
real stereo pair), ``baselines`` (tuned unsharp masking).
"""
