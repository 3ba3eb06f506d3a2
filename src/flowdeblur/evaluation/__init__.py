"""Evaluation: metrics, dataset protocols, flow end-point error and the classical baseline.

Modules: ``metrics`` (PSNR, SSIM, temporal error, 8-bit quantisation), ``protocols``
(:func:`~flowdeblur.evaluation.protocols.evaluate_model` on a dataset under the release, all
or su30 protocol), ``folders`` (:func:`~flowdeblur.evaluation.folders.evaluate_folders` on
written images), ``scoring`` (the scorer both use), ``results`` (the result, as JSON, CSV or
a table), ``heldout`` (the held-out synthetic set, its seeds, the tuned unsharp-masking
baseline and scores of weights on it), ``flow_epe`` (the flow network's end-point error on
held-out synthetic scenes and a real stereo pair), ``baselines`` (unsharp masking).
"""
