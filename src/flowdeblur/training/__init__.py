"""Training: typed configs, the loop (:func:`flowdeblur.training.loop.train`), its batches,
losses (Eq. 14), checkpoints and logs. :mod:`flowdeblur.training.loop` lists the modules."""
